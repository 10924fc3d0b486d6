"""Model configuration: architecture plus the preprocessing that its weights expect (timm-style)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from abanet.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and feed it correctly.

    Attributes:
        name: registry name (``abanet.list_models()``).
        kwargs: constructor overrides passed to the registry builder.
        input_size: square side the model was trained at (pixels).
        mean, std: per-channel normalisation of RGB images scaled to [0, 1].
        threshold: probability above which a pixel counts as mask.
        size_divisor: height and width must be multiples of this.
        flip_tta: average the prediction with that of the mirrored image at inference.
        fill_holes: fill enclosed holes of the predicted mask at inference.
        metadata: free-form facts about trained weights (data, scores, command).
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    threshold: float = 0.5
    size_divisor: int = 32
    flip_tta: bool = False
    fill_holes: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "model config") -> ModelConfig:
        """The config in ``data``; ModelError naming ``source`` when it is not an abanet one."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ModelError(f"{source}: not an abanet model config (no model name)")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        try:
            for key in ("mean", "std"):
                if key in values:
                    values[key] = tuple(float(v) for v in values[key])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: bad model config ({exc})") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: cannot read model config ({exc})") from exc
        return cls.from_dict(data, str(path))
