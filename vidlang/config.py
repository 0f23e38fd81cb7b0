"""Typed dataclass configs and a strict YAML loader.

`load_config(Cls, path, overrides)` builds a (possibly nested) dataclass from YAML plus dotted `key=value`
overrides. It rejects unknown keys (naming them and the closest known key), duplicate keys in the YAML, wrong
types and values outside a `Literal`; a dataclass may add its own checks in `validate(self)` (called bottom-up
after construction). Loading has no side effects: nothing is written. Every checkpoint stores `to_dict(cfg)`.

Sections whose class is picked by name (the model architecture, the training objective) derive from `Choice`:
the YAML mapping holds the selector key and the chosen class's own keys, e.g.
`model: {arch: dual_encoder, embed_dim: 128, video: {...}}`; the loader looks the name up in the section's
registry and builds that class strictly, so a key of another architecture is an error, not silently ignored.

A config path that does not exist is looked up among the configs packaged with vidlang
(`packaged_config`), so `--config norton/demo_cpu.yaml` works from an installed wheel as well as a checkout.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

import yaml

from vidlang.errors import ConfigError

T = TypeVar("T")


class Choice:
    """Base of a config section whose concrete dataclass is chosen by name (see the module docstring).

    A direct subclass is the section type used in annotations (e.g. `ModelSection`): it sets `__selector__` (the
    key holding the name), `__default__` (the name used when the key is absent) and implements `config_class(name)`
    (a registry lookup raising ConfigError for unknown names). Registered classes derive from it as dataclasses
    whose selector field defaults to their own name.
    """

    __selector__: ClassVar[str]
    __default__: ClassVar[str]

    @classmethod
    def config_class(cls, name: str) -> type:
        raise NotImplementedError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert `value` to type `tp`; raise ConfigError naming `key`."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} does not match {_type_name(tp)}")
    if isinstance(tp, type) and issubclass(tp, Choice):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        name = value.get(tp.__selector__, tp.__default__)
        if not isinstance(name, str):
            raise ConfigError(f"{key}.{tp.__selector__}: expected a name, got {name!r}")
        try:
            cls = tp.config_class(name)
        except ConfigError as e:
            raise ConfigError(f"{key}.{tp.__selector__}: {e}") from None
        obj = _build(cls, {**value, tp.__selector__: name}, prefix=key + ".")
        if getattr(obj, tp.__selector__) != name:
            raise ConfigError(f"{key}.{tp.__selector__}: {name!r} builds {cls.__name__}, whose name is "
                              f"{getattr(obj, tp.__selector__)!r}")
        return obj
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-4` (no dot) as a string; accept numeric strings for float fields only.
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if value != value:  # NaN is never a valid setting
            raise ConfigError(f"{key}: NaN is not allowed")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    return value


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), list(fields), n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {prefix}{k}{hint}; known keys: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except (ValueError, AssertionError) as e:
            raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {e}") from None
    return obj


def from_dict(cls: type[T], data: dict | None) -> T:
    """Build `cls` from a plain mapping, strictly."""
    return _build(cls, dict(data or {}))


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict:
    """`["optim.lr=1e-4", "loss.beta=0.3"]` -> nested dict; values are parsed as YAML scalars."""
    out: dict = {}
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value")
        k, v = ov.split("=", 1)
        if not k.strip():
            raise ConfigError(f"override {ov!r} has an empty key")
        _set_dotted(out, k.strip(), yaml.safe_load(v) if v.strip() else "")
    return out


def _merge(base: dict, upd: dict) -> dict:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last one silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def packaged_config(name: str | Path) -> Path | None:
    """A config shipped inside the package (`configs/` of the source tree, `vidlang/configs` in a wheel)."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    root = Path(__file__).resolve().parent / "configs"
    for cand in (rel, rel.with_suffix(".yaml")):
        if (root / cand).is_file():
            return root / cand
    return None


def resolve_config_path(path: str | Path) -> Path:
    """`path` if it exists, else the packaged config of that name; ConfigError when neither is a file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a YAML config file")
    if p.exists():
        return p
    found = packaged_config(p)
    if found is None:
        raise ConfigError(f"{p}: config file not found (neither a path nor a config packaged with vidlang)")
    return found


def read_yaml(path: str | Path) -> dict:
    path = resolve_config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _switch_choices(cls: type, base: dict, upd: dict) -> dict:
    """`base` without the sections whose Choice name `upd` changes: `loss.objective=infonce` on a Norton YAML
    selects InfoNCE with its own defaults instead of failing on Norton's keys (recursive over nested sections)."""
    if not dataclasses.is_dataclass(cls):
        return base
    out = dict(base)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, old, new = hints.get(f.name), base.get(f.name), upd.get(f.name)
        if not (isinstance(old, dict) and isinstance(new, dict)):
            continue
        if isinstance(tp, type) and issubclass(tp, Choice):
            sel = tp.__selector__
            if sel in new and new[sel] != old.get(sel, tp.__default__):
                out[f.name] = {}
        elif dataclasses.is_dataclass(tp):
            out[f.name] = _switch_choices(tp, old, new)
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load `cls` from an optional YAML file and dotted overrides; strict, no side effects. An override that
    switches a Choice section to another name (e.g. `loss.objective=infonce`) replaces that section of the file."""
    data = read_yaml(path) if path is not None else {}
    upd = parse_overrides(overrides)
    data = _merge(_switch_choices(cls, data, upd), upd)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def to_dict(cfg: Any) -> dict:
    """Plain-data view of a config (paths as strings, tuples as lists), for YAML/JSON."""

    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, Path):
            return str(x)
        return x

    return conv(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
