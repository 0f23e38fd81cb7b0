"""The strict config loader: unknown keys, types, literals, validate(), overrides, no side effects."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Optional

import pytest

from vidlang.config import dump_yaml, from_dict, load_config, parse_overrides, to_dict
from vidlang.errors import ConfigError


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    kind: Literal["a", "b"] = "a"

    def validate(self):
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


@dataclasses.dataclass
class Outer:
    name: str = "x"
    inner: Inner = dataclasses.field(default_factory=Inner)
    path: Optional[Path] = None
    tags: list[str] = dataclasses.field(default_factory=list)
    flag: bool = False


def test_defaults_and_nested_build():
    cfg = from_dict(Outer, {"inner": {"lr": 2, "kind": "b"}, "tags": ["u"], "path": "a/b"})
    assert cfg.inner.lr == 2.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.kind == "b" and cfg.tags == ["u"] and cfg.path == Path("a/b")


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key inner\.lrr.*did you mean inner\.lr"):
        from_dict(Outer, {"inner": {"lrr": 1}})


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"inner": {"steps": "ten"}}, r"inner\.steps: expected an integer"),
        ({"inner": {"steps": True}}, r"inner\.steps: expected an integer"),
        ({"inner": {"kind": "c"}}, r"inner\.kind: 'c' is not one of"),
        ({"flag": "yes"}, r"flag: expected true/false"),
        ({"inner": {"lr": float("nan")}}, r"NaN"),
        ({"inner": 3}, r"inner: expected a mapping"),
        ({"inner": {"steps": 0}}, r"steps must be positive"),
    ],
)
def test_bad_values_give_one_clear_error(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        from_dict(Outer, data)


def test_yaml_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\ninner:\n  lr: 0.5\n")
    before = sorted(tmp_path.iterdir())
    cfg = load_config(Outer, p, ["inner.steps=7", "inner.lr=1e-4", "flag=true"])
    assert (cfg.name, cfg.inner.steps, cfg.inner.lr, cfg.flag) == ("run", 7, 1e-4, True)
    assert sorted(tmp_path.iterdir()) == before, "loading a config must not write files"
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config key inner\.nope"):
        load_config(Outer, p, ["inner.nope=1"])


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["noequals"])


def test_roundtrip_through_yaml(tmp_path):
    cfg = from_dict(Outer, {"inner": {"kind": "b"}, "path": "p", "tags": ["t"]})
    p = tmp_path / "r.yaml"
    p.write_text(dump_yaml(cfg))
    assert load_config(Outer, p) == cfg
    assert to_dict(cfg)["path"] == "p"


def test_yaml_problems_are_one_clear_line(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\ninner:\n  lr: 0.1\ninner:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: not valid YAML at line 4, column 1: .*duplicate key 'inner' "
                                          r"\(first at line 2\)"):
        load_config(Outer, dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text("inner:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"line 3.*duplicate key 'lr'"):
        load_config(Outer, nested)
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("name: a\ninner: {lr: 0.1\nflag: true\n")
    with pytest.raises(ConfigError, match=r"syntax\.yaml: not valid YAML at line \d+, column \d+"):
        load_config(Outer, syntax)
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 9 is 0xe9\)"):
        load_config(Outer, binary)
    with pytest.raises(ConfigError, match=r"is a directory, not a YAML config file"):
        load_config(Outer, tmp_path)


def test_packaged_configs_are_found_by_name():
    from vidlang.config import packaged_config, resolve_config_path

    assert packaged_config("norton/demo_cpu") == packaged_config("norton/demo_cpu.yaml")
    assert resolve_config_path("norton/demo_cpu.yaml").read_text().startswith("# vidlang train --config")
    assert packaged_config("../pyproject.toml") is None
    with pytest.raises(ConfigError, match="neither a path nor a config packaged with vidlang"):
        resolve_config_path("norton/nope.yaml")
