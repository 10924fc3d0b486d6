"""Conversions into the project's ``images/`` + ``masks/`` layout."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from abanet.data.atomic import write_bytes_atomic
from abanet.data.io import write_image_atomic
from abanet.data.readers import (
    DEFAULT_LABELME_LABELS,
    Problem,
    labelme_embedded_bytes,
    load_mask,
    read_labelme,
)
from abanet.errors import AbanetError

_PIL_EXT = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def convert_labelme(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    labels: Sequence[str] = DEFAULT_LABELME_LABELS,
    recursive: bool = False,
    overwrite: bool = False,
) -> tuple[int, list[Problem]]:
    """Write ``OUT/images/<name>`` (original bytes, not re-encoded) and ``OUT/masks/<stem>.png``
    (0/255) for every LabelMe json in ``src``. Returns the number of pairs written and problems.
    Existing files are left alone (a problem each) unless ``overwrite``."""
    samples, problems = read_labelme(src, labels=labels, recursive=recursive)
    problems = list(problems)
    out_root = Path(out)
    written = 0
    for s in samples:
        stem = Path(s.name).with_suffix("")
        try:
            if s.image_path.suffix.lower() == ".json":
                data = labelme_embedded_bytes(s.image_path)
                with Image.open(io.BytesIO(data)) as im:
                    ext = _PIL_EXT.get(im.format or "", ".png")
            else:
                data = s.image_path.read_bytes()
                ext = s.image_path.suffix.lower()
            img_target = out_root / "images" / f"{stem.as_posix()}{ext}"
            mask_target = out_root / "masks" / f"{stem.as_posix()}.png"
            if not overwrite:
                for t in (img_target, mask_target):
                    if t.exists():
                        raise AbanetError(f"{t}: file exists (pass --overwrite to replace it)")
            mask = load_mask(s) * 255
            write_bytes_atomic(img_target, data, overwrite=overwrite)
            write_image_atomic(mask_target, mask, overwrite=overwrite)
            written += 1
        except (AbanetError, OSError) as exc:
            problems.append(Problem(str(s.mask_path), "convert", f"not converted: {exc}"))
    return written, problems
