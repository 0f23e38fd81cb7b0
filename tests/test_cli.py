"""The CLI dispatcher: in-process main(argv), one-line errors, exit codes."""

from __future__ import annotations

import pytest

from vidlang import cli


def test_help_lists_every_subcommand(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_module_exists_and_has_entry(name):
    import importlib

    module = importlib.import_module(cli.SUBCOMMANDS[name][0])
    entry = "show_config_main" if name == "show-config" else "main"
    assert callable(getattr(module, entry))


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    """Ctrl-C in any subcommand: one line and the SIGINT exit status, no traceback."""
    import types
    import sys

    module = types.ModuleType("vidlang_test_interrupted")

    def main(argv):
        raise KeyboardInterrupt

    module.main = main
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.SUBCOMMANDS, "interrupted", (module.__name__, "raises KeyboardInterrupt"))
    assert cli.main(["interrupted"]) == 130
    assert capsys.readouterr().err.strip() == "vidlang interrupted: interrupted"


def test_outputs_that_cannot_be_written_are_one_line(tmp_path, capsys):
    import subprocess

    (tmp_path / "a_file").write_text("x")
    assert cli.main(["synth", str(tmp_path / "a_file"), "--videos", "2", "--no-progress"]) == 2
    assert "a_file: exists and is not a directory" in capsys.readouterr().err
    assert cli.main(["eval", "crosstask", "--checkpoint", "random", "--features", str(tmp_path),
                     "--annotations", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path}: is a directory; give a file name" in err  # refused before any evaluation
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only filesystem here: {mounted.stderr.decode().strip()}")
    try:
        assert cli.main(["synth", str(ro / "corpus"), "--videos", "2", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Read-only file system" in err[0]
    finally:
        subprocess.run(["umount", str(ro)], check=True)
