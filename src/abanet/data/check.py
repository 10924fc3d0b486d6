"""Dataset health check behind ``abanet data check``.

Errors (exit code 1): unpaired images or masks, unreadable files, image/mask size mismatch, masks
that are not binary (see :func:`abanet.data.io.mask_value_problems`), colour masks whose channels
differ, label-index masks, bad LabelMe/CSV entries.
Warnings: images that are not RGB (grayscale, RGBA, CMYK... they are converted), masks stored
with several identical channels, empty masks, exact duplicate images (same bytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from abanet.data.dedup import duplicate_sets
from abanet.data.io import (
    AMBIGUOUS_HIGH,
    AMBIGUOUS_LOW,
    image_mode,
    mask_value_problems,
    read_image,
)
from abanet.data.readers import Problem, Sample, load_image, load_mask_raw
from abanet.errors import AbanetError

_MODE_NAMES = {
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "1": "1-bit",
    "P": "palette",
    "PA": "palette with alpha",
    "RGBA": "RGBA",
    "CMYK": "CMYK",
    "I;16": "16-bit",
    "I;16B": "16-bit",
    "I;16L": "16-bit",
    "I": "32-bit integer",
    "F": "32-bit float",
}


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`."""

    root: str
    kind: str
    samples: int = 0
    pairs: int = 0
    problems: list[Problem] = field(default_factory=list)
    image_sizes: Counter[str] = field(default_factory=Counter)
    foreground: list[float] = field(default_factory=list)
    groups: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def to_dict(self) -> dict[str, Any]:
        fg = np.asarray(self.foreground, dtype=np.float64)
        return {
            "root": self.root,
            "kind": self.kind,
            "samples": self.samples,
            "pairs": self.pairs,
            "groups": self.groups,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problem_counts": self.counts(),
            "image_sizes": dict(self.image_sizes.most_common()),
            "foreground_fraction": {
                "mean": float(fg.mean()) if fg.size else None,
                "min": float(fg.min()) if fg.size else None,
                "max": float(fg.max()) if fg.size else None,
            },
            "problems": [p.to_dict() for p in self.problems],
        }


def _mask_channels(path: Path) -> tuple[str, np.ndarray | None]:
    """Mask mode and, for multi-channel colour masks, the RGB array (else None)."""
    with Image.open(path) as im:
        mode = im.mode
        if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "RGBX"):
            return mode, np.asarray(im.convert("RGB"), dtype=np.uint8)
    return mode, None


def check_sample(
    sample: Sample, threshold: int = 127
) -> tuple[list[Problem], tuple[int, int] | None, float | None]:
    """Problems of one sample, its image size ``(w, h)`` and mask foreground fraction."""
    problems: list[Problem] = []
    ip, mp = sample.image_path, sample.mask_path
    is_json_image = ip.suffix.lower() == ".json"
    image: np.ndarray | None = None
    try:
        if not is_json_image:
            mode, _ = image_mode(ip)
            if mode != "RGB":
                problems.append(
                    Problem(
                        str(ip),
                        "channels",
                        f"image is {_MODE_NAMES.get(mode, mode)} (mode {mode}); read as RGB",
                        "warning",
                    )
                )
            image = read_image(ip)
        else:
            image = load_image(sample)
    except AbanetError as exc:
        problems.append(Problem(str(ip), "unreadable", _strip_path(str(exc), ip)))
    size = (image.shape[1], image.shape[0]) if image is not None else None
    if mp is None:
        return problems, size, None
    raw: np.ndarray | None = None
    try:
        if mp.suffix.lower() != ".json":
            mode, rgb = _mask_channels(mp)
            if rgb is not None:
                differs = int(np.abs(rgb.astype(np.int16) - rgb[:, :, :1]).max()) if rgb.size else 0
                if differs > 16:
                    problems.append(
                        Problem(
                            str(mp),
                            "channels",
                            f"colour mask (mode {mode}, channels differ by up to {differs});"
                            " it is converted to grayscale, save masks single-channel 0/255",
                        )
                    )
                else:
                    problems.append(
                        Problem(
                            str(mp),
                            "channels",
                            f"mask has several channels (mode {mode}); converted to grayscale",
                            "warning",
                        )
                    )
        raw = load_mask_raw(sample)
    except AbanetError as exc:
        problems.append(Problem(str(mp), "unreadable", _strip_path(str(exc), mp)))
    except OSError as exc:
        problems.append(Problem(str(mp), "unreadable", f"cannot read mask ({exc})"))
    if raw is None:
        return problems, size, None
    for msg in mask_value_problems(raw, threshold):
        problems.append(Problem(str(mp), "not-binary", msg))
    if image is not None and raw.shape != image.shape[:2]:
        problems.append(
            Problem(
                str(mp),
                "size-mismatch",
                f"mask is {raw.shape[1]}x{raw.shape[0]} but image {ip.name} is"
                f" {image.shape[1]}x{image.shape[0]}",
            )
        )
    fg = float(np.count_nonzero(raw > threshold)) / max(raw.size, 1)
    if fg == 0.0:
        problems.append(Problem(str(mp), "empty-mask", "mask has no foreground", "warning"))
    elif fg == 1.0:
        problems.append(Problem(str(mp), "full-mask", "mask is foreground everywhere", "warning"))
    return problems, size, fg


def _strip_path(message: str, path: Path) -> str:
    """Error messages start with the path; the Problem carries it already."""
    for prefix in (f"{path}: ", f"{path.resolve()}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def find_duplicates(samples: Sequence[Sample]) -> list[Problem]:
    """One warning per image file whose bytes equal an earlier sample's image
    (:func:`abanet.data.dedup.duplicate_sets`; ``abanet data dedup`` finds near duplicates)."""
    out = []
    for dups in duplicate_sets(samples):
        first = dups[0].image_path
        for s in dups[1:]:
            out.append(
                Problem(
                    str(s.image_path),
                    "duplicate",
                    f"same bytes as {first} (exact duplicate image)",
                    "warning",
                )
            )
    return out


def check_dataset(
    samples: Sequence[Sample],
    reader_problems: Sequence[Problem] = (),
    root: str = "",
    kind: str = "",
    threshold: int = 127,
    duplicates: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Read every sample and collect problems (reader problems first)."""
    report = CheckReport(root=root, kind=kind, samples=len(samples))
    report.problems.extend(reader_problems)
    report.pairs = sum(1 for s in samples if s.mask_path is not None)
    report.groups = len({s.group if s.group is not None else s.name for s in samples})
    for i, s in enumerate(samples):
        probs, size, fg = check_sample(s, threshold)
        report.problems.extend(probs)
        if size is not None:
            report.image_sizes[f"{size[0]}x{size[1]}"] += 1
        if fg is not None:
            report.foreground.append(fg)
        if progress is not None:
            progress(i + 1, len(samples))
    if duplicates:
        report.problems.extend(find_duplicates(samples))
    return report


__all__ = ["AMBIGUOUS_HIGH", "AMBIGUOUS_LOW", "CheckReport", "check_dataset", "check_sample"]
