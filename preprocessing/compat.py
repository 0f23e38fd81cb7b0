"""The one place where vidlang patches third-party import problems.

pytorchvideo 0.1.5 (its last release, 2022) imports ``torchvision.transforms.functional_tensor``, a module that
torchvision renamed ``_functional_tensor`` (the old name is gone in torchvision 0.17+; vidlang pins 0.29.1).
Aliasing the new module under the old name in ``sys.modules`` before pytorchvideo is imported is enough: the functions it uses kept their signatures. Every vidlang module that needs pytorchvideo imports it
through :func:`import_pytorchvideo` so the alias is installed exactly once and in one place.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

from vidlang.errors import VidlangError

_OLD_NAME = "torchvision.transforms.functional_tensor"
_NEW_NAME = "torchvision.transforms._functional_tensor"


def install_torchvision_alias() -> None:
    """Make ``torchvision.transforms.functional_tensor`` importable again (idempotent).

    Does nothing when the old module still exists (an older torchvision) or the alias is already installed.
    """
    if _OLD_NAME in sys.modules:
        return
    try:
        importlib.import_module(_OLD_NAME)
        return  # an older torchvision that still ships the public name: nothing to patch
    except ImportError:
        pass
    sys.modules[_OLD_NAME] = importlib.import_module(_NEW_NAME)


def import_pytorchvideo(submodule: str = "") -> ModuleType:
    """Import ``pytorchvideo`` (or ``pytorchvideo.<submodule>``) with the torchvision alias installed.

    Raises VidlangError (not ImportError) when pytorchvideo is not installed, so the CLI prints one line.
    """
    install_torchvision_alias()
    name = "pytorchvideo" + (f".{submodule}" if submodule else "")
    try:
        with warnings.catch_warnings():
            # pytorchvideo decorates a few helpers with torch.jit.script, which torch 2.14 deprecates; the
            # warning is about pytorchvideo's code, not the caller's, and would repeat in every worker.
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.script.*")
            return importlib.import_module(name)
    except ImportError as exc:
        raise VidlangError(f"cannot import {name}: {exc} (install pytorchvideo==0.1.5)") from exc
