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
