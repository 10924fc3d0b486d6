"""Model registry: ``create_model(name, **overrides)`` and ``list_models()`` (timm-style).

A builder registers under its own function name with :func:`register_model`; its docstring's
first line is the model's description. ``create_model`` makes the :class:`ModelConfig` (name and
options) and calls ``builder(config, **options)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from abanet.errors import ModelError
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig

Builder = Callable[..., SegmentationModel]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    Attributes:
        name: the builder's function name.
        builder: ``builder(config, **options) -> SegmentationModel``.
        description: one line (the builder docstring's first line).
        family: ``abanet``, ``lite``, ``smp``, ``sota`` (the other methods of Table 2),
            ``maskface`` (the masked-face methods of the paper's Table 4) or ``classical``
            (no learned parameters).
        encoder: the encoder it builds by default (e.g. ``resnet34``).
        encoder_weights: where ``encoder_weights="imagenet"`` comes from without an offline
            package (``torchvision`` or ``smp``; both download), None where there are none.
        defaults: options applied before the caller's (and saved in the config).
    """

    name: str
    builder: Builder
    description: str
    family: str
    encoder: str
    encoder_weights: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    *, family: str, encoder: str, encoder_weights: str | None = None, **defaults: Any
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(config, **options)`` under ``builder.__name__``."""

    def wrap(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _REGISTRY:
            raise ModelError(f"model name {name!r} is registered twice")
        description = (builder.__doc__ or name).strip().splitlines()[0].rstrip(".")
        _REGISTRY[name] = ModelEntry(
            name, builder, description, family, encoder, encoder_weights, dict(defaults)
        )
        return builder

    return wrap


def _ensure_loaded() -> None:
    # Importing the architecture packages registers their builders.
    import abanet.models.abanet  # noqa: F401
    import abanet.models.dad  # noqa: F401
    import abanet.models.einet  # noqa: F401
    import abanet.models.eunet  # noqa: F401
    import abanet.models.grabcut  # noqa: F401
    import abanet.models.lite  # noqa: F401
    import abanet.models.maskrcnn  # noqa: F401
    import abanet.models.smp  # noqa: F401
    import abanet.models.unet  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted; optionally one family (``abanet``, ``lite``, ``smp``,
    ``sota``, ``maskface``, ``classical``)."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (ModelError with close matches when unknown)."""
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
    config = ModelConfig(name=name, kwargs=dict(kwargs))
    try:
        return entry.builder(config, **kwargs)
    except TypeError as exc:  # unknown keyword
        raise ModelError(f"{name}: bad option: {exc}") from exc
