"""Checks of command-line values, run before any model loads (each failure is one line, exit 2)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from abanet.errors import UsageError


def check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    """Refuse ``value`` for ``option`` unless it is one of ``choices``."""
    if value not in choices:
        raise UsageError(f"{option} {value!r}: choose one of {', '.join(choices)}")


def check_inference_options(
    device: str, backend: str, detector: str | None, device_type: str | None = None
) -> None:
    """The device exists here (or, given ``device_type``, where the model will run), the backend
    is registered and runs on it, the detector is known and installed."""
    from abanet.faces import detector_install_hint, list_detectors
    from abanet.inference.backends.devices import resolve_device
    from abanet.inference.backends.registry import check_backend, list_backends

    check_choice("--backend", backend, list_backends())
    check_backend(backend, device_type or resolve_device(device).type)
    if detector is None or detector == "default":
        return
    check_choice("--detector", detector, ["default", *list_detectors()])
    if detector not in list_detectors(available_only=True):
        raise UsageError(
            f"--detector {detector}: not installed here ({detector_install_hint(detector)})"
        )


def check_out_dir(path: Path) -> None:
    """``path`` is a folder, or one can be made there (without making it)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a folder; give an output folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{path}: cannot be created ({parent} is a file)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot be created or written ({parent}: permission denied)")


def track_items(description: str, quiet: bool, console: Any) -> Callable[[Iterable, int], Iterable]:
    """``wrap(items, total)``: ``items`` behind a rich progress bar on ``console`` (as they are
    with ``quiet``), for commands that hand their loop an iterable."""
    from rich.progress import track

    def wrap(items: Iterable, total: int) -> Iterable:
        if quiet:
            return items
        return track(items, total=total, description=description, console=console)

    return wrap


@contextmanager
def progress_bar(description: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, off with ``quiet`` or when stderr is not a terminal; yields
    ``update(done, total)``."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(console=console, disable=quiet or not console.is_terminal, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
