"""Helpers shared by the reader tests: write a fixture, assert a FormatError names file, entry and problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidlang.errors import FormatError, VidlangError


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path


def expect_format_error(fn, path, entry: str | None, *fragments: str) -> FormatError:
    with pytest.raises(FormatError) as info:
        fn(path)
    err = info.value
    msg = str(err)
    assert isinstance(err, VidlangError)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    if entry is not None:
        assert err.entry is not None and entry in err.entry, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return err
