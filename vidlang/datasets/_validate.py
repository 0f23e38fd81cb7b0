"""Shared validation helpers for the dataset readers.

Every helper takes the file `path` and the `entry` being read (a video id, "line 12", ...) so that any failure
becomes one `FormatError` line naming both. Readers stay small: they describe *what* a record looks like and
these helpers do the checking.

Numbers: JSON booleans are not numbers (Python's `bool` is an `int`, so it is excluded explicitly); NaN and
infinities are rejected wherever a time or a count is expected (Python's json module accepts the non-standard
`NaN`/`Infinity` literals, so they are parsed and then refused with the entry named).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from vidlang.errors import FormatError, VidlangError


def need_file(path: str | None, what: str) -> Path:
    """The configured path of `what`, which must exist (one-line errors: not configured, not found)."""
    if not path:
        raise VidlangError(f"no {what} configured")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} not found")
    return p


def fail(path: str | Path, entry: str | None, message: str) -> NoReturn:
    raise FormatError(path, entry, message)


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    # json.load keeps the last of two equal keys silently; a duplicated video id would lose annotations.
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def load_json(path: str | Path) -> Any:
    """Parse a JSON file, refusing duplicate object keys; errors name the file (and line/key)."""
    path = Path(path)
    if not path.is_file():
        fail(path, None, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        fail(path, e.key, f"duplicate key {e.key!r}")
    except json.JSONDecodeError as e:
        fail(path, f"line {e.lineno} col {e.colno}", f"not valid JSON: {e.msg}")
    except UnicodeDecodeError:
        fail(path, None, "not UTF-8 text")


def per_video_json(path: str | Path, video_ids, file_kind: str) -> list[tuple[str, Any]]:
    """A JSON file keyed by video id -> [(id, record)] for `video_ids` (default: all, in file order); an id the
    caller names but the file lacks is an error (the caller expects its data)."""
    data = mapping(path, None, load_json(path), "the top level")
    wanted = list(data) if video_ids is None else list(video_ids)
    for vid in wanted:
        if vid not in data:
            fail(path, vid, f"video id not found in the {file_kind}")
    return [(vid, data[vid]) for vid in wanted]


def mapping(path, entry, value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        fail(path, entry, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def sequence(path, entry, value: Any, what: str) -> list:
    if not isinstance(value, list):
        fail(path, entry, f"{what} must be a JSON list, got {type(value).__name__}")
    return value


def field(path, entry, obj: dict, key: str) -> Any:
    if key not in obj:
        fail(path, entry, f"missing key {key!r}")
    return obj[key]


def string(path, entry, value: Any, what: str, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        fail(path, entry, f"{what} must be a string, got {_show(value)}")
    if not allow_empty and not value.strip():
        fail(path, entry, f"{what} is empty")
    return value


def number(path, entry, value: Any, what: str, min_value: float | None = 0.0,
           positive: bool = False) -> float:
    """A finite float (ints accepted); `min_value=None` allows negatives."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(path, entry, f"{what} must be a number, got {_show(value)}")
    return _finite(path, entry, float(value), what, min_value, positive)


def parse_number(path, entry, text: str, what: str, min_value: float | None = 0.0) -> float:
    """A finite float from CSV text."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        fail(path, entry, f"{what} must be a number, got {_show(text)}")
    return _finite(path, entry, value, what, min_value, False)


def _finite(path, entry, value: float, what: str, min_value, positive: bool) -> float:
    if not math.isfinite(value):
        fail(path, entry, f"{what} is {value}, expected a finite number")
    if min_value is not None and value < min_value:
        fail(path, entry, f"{what} = {value} is below {min_value}")
    if positive and value <= 0:
        fail(path, entry, f"{what} = {value} must be positive")
    return value


def integer(path, entry, value: Any, what: str, min_value: int | None = None,
            max_value: int | None = None) -> int:
    """An int from a JSON int or a string of digits (COIN ships step ids as strings, "212")."""
    if isinstance(value, bool):
        fail(path, entry, f"{what} must be an integer, got {_show(value)}")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        out = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    else:
        fail(path, entry, f"{what} must be an integer, got {_show(value)}")
    if min_value is not None and out < min_value:
        fail(path, entry, f"{what} = {out} is out of range (minimum {min_value})")
    if max_value is not None and out > max_value:
        fail(path, entry, f"{what} = {out} is out of range (maximum {max_value})")
    return out


def check_span(path, entry, start: float, end: float, what: str) -> tuple[float, float]:
    """Start and end already finite; refuse negative times and start > end (zero length is allowed)."""
    if start < 0 or end < 0:
        fail(path, entry, f"{what} [{start}, {end}] has a negative time")
    if start > end:
        fail(path, entry, f"{what} [{start}, {end}] starts after it ends")
    return start, end


def segment(path, entry, value: Any, what: str = "segment") -> tuple[float, float]:
    """A JSON [start, end] pair of finite, non-negative numbers with start <= end."""
    if not isinstance(value, list) or len(value) != 2:
        fail(path, entry, f"{what} must be a [start, end] list, got {_show(value)}")
    start = number(path, entry, value[0], f"{what} start", min_value=None)
    end = number(path, entry, value[1], f"{what} end", min_value=None)
    return check_span(path, entry, start, end, what)


def read_csv_rows(path: str | Path, required: tuple[str, ...], delimiter: str = ",",
                  header: bool = True, n_fields: int | None = None,
                  one_of: tuple[str, ...] = ()) -> Iterator[tuple[str, dict | list]]:
    """Yield (entry, row) for each non-blank data row; entry is "line N" (1-based physical line).

    With a header: rows are dicts; the header must contain every `required` column (extra columns are
    tolerated, as MSR-VTT's MC file ships them) and exactly one of the `one_of` columns when that is given;
    a row must have exactly as many fields as the header.
    Without a header: rows are lists of exactly `n_fields` stripped strings.
    """
    path = Path(path)
    if not path.is_file():
        fail(path, None, "file not found")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            columns: list[str] | None = None
            if header:
                first = next(reader, None)
                if first is None:
                    fail(path, "line 1", "empty file, expected a header")
                columns = [c.strip() for c in first]
                missing = [c for c in required if c not in columns]
                if missing:
                    sep = "TAB" if delimiter == "\t" else repr(delimiter)
                    fail(path, "header", f"missing column(s) {missing} ({sep}-separated); found {columns}")
                if one_of and sum(c in columns for c in one_of) != 1:
                    fail(path, "header", f"need exactly one of the columns {list(one_of)}; found {columns}")
                if len(set(columns)) != len(columns):
                    fail(path, "header", f"duplicate column name in {columns}")
            for row in reader:
                entry = f"line {reader.line_num}"
                if not row or all(not c.strip() for c in row):
                    continue
                if columns is not None:
                    if len(row) != len(columns):
                        fail(path, entry, f"expected {len(columns)} fields, got {len(row)}")
                    yield entry, dict(zip(columns, row))
                else:
                    if n_fields is not None and len(row) != n_fields:
                        fail(path, entry, f"expected {n_fields} comma-separated fields, got {len(row)}")
                    yield entry, [c.strip() for c in row]
    except UnicodeDecodeError:
        fail(path, None, "not UTF-8 text")
    except csv.Error as e:
        fail(path, None, f"not valid CSV: {e}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
