"""Error types. Every error a user can cause derives from VidlangError; the CLI prints it as one line."""

from __future__ import annotations

from pathlib import Path


class VidlangError(Exception):
    """Base class for errors caused by input (files, configs, arguments), not by bugs."""


class ConfigError(VidlangError):
    """A config file or override is invalid: unknown key, wrong type, impossible value."""


class FormatError(VidlangError):
    """A data file does not follow its public format. Names the file and the offending entry."""

    def __init__(self, path: str | Path, entry: str | None, message: str):
        self.path = str(path)
        self.entry = entry
        where = f"{self.path}" + (f" [{entry}]" if entry is not None else "")
        super().__init__(f"{where}: {message}")


class DecodeError(VidlangError):
    """A video file cannot be decoded (missing, empty, truncated, not a video)."""


class LockedError(VidlangError):
    """A run folder is held by another live process (vidlang.io.RunLock)."""


class NonFiniteError(VidlangError, ValueError):
    """A loss, its input or a transport plan holds NaN/inf (training stops before the update reaches the weights)."""
