"""House rules checked on the source: exceptions live in ``abanet.errors``; no module imports
another's private (``_name``) names."""

from __future__ import annotations

import ast
from pathlib import Path

import abanet.errors

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "src" / "abanet").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")])


def _trees():
    for path in SOURCES:
        yield path.relative_to(ROOT), ast.parse(path.read_text(), str(path))


def test_every_exception_class_is_in_abanet_errors() -> None:
    elsewhere = [
        f"{path}: {node.name}"
        for path, tree in _trees()
        if path.name != "errors.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name.endswith("Error")
    ]
    assert elsewhere == []
    for name in ("BackendError", "ConfigError", "DetectorUnavailableError", "ExportError"):
        assert issubclass(getattr(abanet.errors, name), abanet.errors.AbanetError)


def test_no_private_imports_across_modules() -> None:
    private = [
        f"{path}:{node.lineno}: {node.module}.{alias.name}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("abanet")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert private == []


def test_old_import_paths_of_moved_exceptions_still_work() -> None:
    from abanet.engine import ConfigError
    from abanet.faces import DetectorUnavailableError
    from abanet.inference.backends import BackendError
    from abanet.synth import LandmarkError, PlacementError

    assert ConfigError is abanet.errors.ConfigError
    assert DetectorUnavailableError is abanet.errors.DetectorUnavailableError
    assert BackendError is abanet.errors.BackendError
    assert (LandmarkError, PlacementError) == (
        abanet.errors.LandmarkError,
        abanet.errors.PlacementError,
    )
