"""The model shipped in the package: present, small, loadable, and sensible on the samples."""

from __future__ import annotations

import numpy as np
import pytest

import abanet
from abanet.inference.segmenter import Segmenter, default_samples_dir
from abanet.models.hub import DEFAULT_MODEL_FILE, WEIGHTS_DIR


def test_default_is_registered_and_small() -> None:
    name = DEFAULT_MODEL_FILE.read_text().strip()
    weights = WEIGHTS_DIR / name / "model.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size <= 30 * 1024 * 1024  # the limit
    model = abanet.load_model("default")
    assert model.config.name == "abanet_lite"
    assert model.config.metadata.get("shipped_name") == name


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter("default", device="cpu", backend="eager", detector=None)


@pytest.mark.parametrize("sample", ["sample_surgical.jpg", "sample_cloth.jpg", "sample_n95.jpg"])
def test_masks_on_the_samples_sit_on_the_lower_face(segmenter: Segmenter, sample: str) -> None:
    """Sample crops: a mask covers roughly the lower half of the face, below the eyes."""
    mask = segmenter.predict(default_samples_dir() / sample) > 0
    h, w = mask.shape
    assert 0.15 < mask.mean() < 0.7
    ys, xs = np.nonzero(mask)
    assert ys.mean() > 0.5 * h  # centroid in the lower half
    assert mask[: h // 10].mean() < 0.02  # nothing at eye level (the crops start at the eyes)
    assert abs(xs.mean() - w / 2) < 0.15 * w  # centred
