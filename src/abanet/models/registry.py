"""Model registry: ``create_model(name, **overrides)`` and ``list_models()`` (timm-style)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder, a one-line description and its family."""

    name: str
    builder: Callable[..., SegmentationModel]
    description: str
    family: str
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, description: str, family: str, **defaults: Any
) -> Callable[[Callable[..., SegmentationModel]], Callable[..., SegmentationModel]]:
    """Decorator registering ``builder(**kwargs) -> SegmentationModel`` under ``name``."""

    def wrap(builder: Callable[..., SegmentationModel]) -> Callable[..., SegmentationModel]:
        if name in _REGISTRY:
            raise ModelError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, description, family, dict(defaults))
        return builder

    return wrap


def _ensure_loaded() -> None:
    # Importing the architecture packages registers their builders.
    import abanet.models.abanet  # noqa: F401
    import abanet.models.lite  # noqa: F401
    import abanet.models.smp  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted; optionally one family (``abanet``, ``lite``, ``smp``)."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(
            f"unknown model name {name!r}{hint}; known: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> SegmentationModel:
    """Build a registered model with random or ImageNet encoder weights (no trained weights).

    Use :func:`abanet.load_model` for trained weights.
    """
    entry = get_entry(name)
    kwargs = {**entry.defaults, **overrides}
    try:
        return entry.builder(**kwargs)
    except TypeError as exc:  # unknown keyword
        raise ModelError(f"{name}: bad option: {exc}") from exc
