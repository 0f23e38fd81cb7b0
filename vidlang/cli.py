"""`vidlang <subcommand>`: one entry point; every subcommand is a `main(argv) -> int` callable in-process.

Errors caused by input (VidlangError, and OSErrors such as a missing file, a directory where a file was expected
or a read-only filesystem) print one line `vidlang <cmd>: error: ...` and exit 2; `vidlang --debug <cmd> ...`
shows the traceback instead. Ctrl-C exits with 130 (the convention for SIGINT) after the command saved what it
safely could.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module, help). Imported lazily so `vidlang synth` does not pay for torch/transformers imports.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("vidlang.synth.generate", "render the synthetic noisy long-video corpus"),
    "preprocess": ("preprocessing.cli", "decode videos, extract features, clean narration"),
    "train": ("vidlang.train.cli", "train a registered model with a registered objective"),
    "eval": ("vidlang.eval.cli", "evaluate a checkpoint on temporal tasks"),
    "align": ("vidlang.data.realign", "realign narration with a trained model"),
    "report": ("vidlang.eval.report", "side-by-side table and figures of result files"),
    "plot-alignment": ("vidlang.eval.plots", "heatmap of a video's transport plan"),
    "study": ("vidlang.study", "noise study: norton vs infonce post-training over seeds"),
    "demo": ("vidlang.demo", "the end-to-end demo on the embedded synthetic corpus"),
    "show-config": ("vidlang.train.cli", "print a resolved training config"),
}


def _usage() -> str:
    lines = ["usage: vidlang [--debug] <subcommand> [args]", "", "subcommands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug = True
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"vidlang: error: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # transformers' per-load "Loading weights" bar would interleave with vidlang's own progress and errors
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from vidlang.errors import VidlangError

    module = importlib.import_module(SUBCOMMANDS[name][0])
    entry = getattr(module, "show_config_main" if name == "show-config" else "main")
    try:
        rc = entry(rest)
    except (VidlangError, OSError) as e:
        if debug:
            raise
        print(f"vidlang {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"vidlang {name}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
