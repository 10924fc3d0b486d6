"""Atomic, exclusive file writes: a temp file beside the target, published in one step.

Readers never see a half-written file; without ``overwrite`` two writers never replace each
other's file (the name is claimed exclusively when the file is published).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from abanet.errors import OutputExistsError

_UMASK = os.umask(0o022)  # read the process umask once (os.umask is not thread-safe) ...
os.umask(_UMASK)  # ... and put it back
#: permissions of a newly written file: what ``open()`` would give under the process umask
FILE_MODE = 0o666 & ~_UMASK


def atomic_temp(target: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A temporary file beside ``target`` for an atomic ``os.replace``, with the permissions a
    new file gets (``mkstemp`` alone would leave it readable by its owner only)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> Path:
    """Write raw bytes via a temp file in the same folder, then publish it in one step.

    With ``overwrite`` the temp file replaces ``path``; without, it is linked to ``path`` only if
    no file is there at that moment (an exclusive create: two writers never replace each other's
    file), else :class:`OutputExistsError`.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise _exists(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_temp(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, target, overwrite)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def publish(tmp: str | os.PathLike[str], target: Path, overwrite: bool = False) -> Path:
    """Give a finished temporary file (from :func:`atomic_temp`) the name ``target`` in one step:
    replacing it with ``overwrite``, else only if no file has that name
    (:class:`OutputExistsError`)."""
    if overwrite:
        os.replace(tmp, target)
    else:
        _publish_exclusive(str(tmp), target)
    return target


def _exists(target: Path) -> OutputExistsError:
    return OutputExistsError(
        f"{target}: file exists (pass overwrite=True / --overwrite to replace it)"
    )


def _publish_exclusive(tmp: str, target: Path) -> None:
    """Give the finished ``tmp`` the name ``target`` unless a file already has it."""
    try:
        os.link(tmp, target)  # atomic, fails when target exists
    except FileExistsError:
        raise _exists(target) from None
    except OSError:  # a file system without hard links: reserve the name, then replace
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        except FileExistsError:
            raise _exists(target) from None
        os.replace(tmp, target)
