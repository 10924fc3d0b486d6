"""SegmentationDataset and build_transforms: shapes, dtypes, normalisation, mask alignment."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from abanet.data.dataset import SegmentationDataset
from abanet.data.readers import Sample, read_folders
from abanet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, augmentations, build_transforms
from abanet.errors import DataError


def _pair_dir(root: Path, n: int = 3, size: int = 20) -> list[Sample]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = np.zeros((size, size + 4, 3), np.uint8)
        img[size // 2 :] = 200
        m = np.zeros((size, size + 4), np.uint8)
        m[size // 2 :] = 255
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        Image.fromarray(m).save(root / "masks" / f"s{i}.jpg", quality=90)
    samples, problems = read_folders(root)
    assert problems == []
    return samples


def test_item_shapes_dtypes_values(tmp_path: Path) -> None:
    ds = SegmentationDataset(_pair_dir(tmp_path), size=32)
    assert len(ds) == 3
    item = ds[0]
    assert set(item) == {"image", "mask", "name"}
    assert item["name"] == "s0.png"
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    # the lower half is mask and image value 200; the top is 0
    assert item["mask"][0, -1].eq(1).all() and item["mask"][0, 0].eq(0).all()
    expected = (200 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert item["image"][0, -1, 0].item() == pytest.approx(expected, abs=1e-4)
    assert item["image"][0, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[0] / IMAGENET_STD[0])


def test_custom_mean_std_and_batching(tmp_path: Path) -> None:
    ds = SegmentationDataset(_pair_dir(tmp_path), size=16, mean=(0, 0, 0), std=(1, 1, 1))
    assert ds[0]["image"].max().item() == pytest.approx(200 / 255, abs=1e-4)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["mask"].shape == (3, 1, 16, 16)
    assert batch["name"] == ["s0.png", "s1.png", "s2.png"]


@pytest.mark.parametrize("strength", ["light", "default", "heavy"])
def test_augmented_items(tmp_path: Path, strength: str) -> None:
    ds = SegmentationDataset(_pair_dir(tmp_path), size=24, augment=True, strength=strength, seed=0)
    for _ in range(5):
        item = ds[1]
        assert item["image"].shape == (3, 24, 24) and torch.isfinite(item["image"]).all()
        assert item["mask"].shape == (1, 24, 24)
        assert set(torch.unique(item["mask"]).tolist()) <= {0.0, 1.0}


def test_geometric_augmentation_keeps_mask_aligned() -> None:
    rng = np.random.default_rng(0)
    geo = A.Compose(augmentations("heavy")[:2], seed=3)  # flip + affine
    for _ in range(20):
        img = np.zeros((48, 48, 3), np.uint8)
        m = np.zeros((48, 48), np.float32)
        y0, x0 = rng.integers(5, 25, 2)
        img[y0 : y0 + 18, x0 : x0 + 14] = 255
        m[y0 : y0 + 18, x0 : x0 + 14] = 1
        out = geo(image=img, mask=m)
        a = out["image"][:, :, 0] > 127
        b = out["mask"] > 0.5
        assert (a != b).mean() < 0.02


def test_zoom_out_shrinks_mask() -> None:
    # The affine zooms out as well as in: the mean mask area after augmentation must drop.
    m = np.ones((64, 64), np.float32)
    img = np.full((64, 64, 3), 128, np.uint8)
    aug = A.Compose([augmentations("default")[1]], seed=0)
    areas = [aug(image=img, mask=m)["mask"].mean() for _ in range(60)]
    assert min(areas) < 0.6 and np.mean(areas) < 0.95


def test_build_transforms_eval_is_deterministic() -> None:
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    m = np.zeros((30, 40), np.float32)
    t = build_transforms(16, train=False)
    a, b = t(image=img, mask=m), t(image=img, mask=m)
    assert a["image"].shape == (16, 16, 3) and a["image"].dtype == np.float32
    np.testing.assert_array_equal(a["image"], b["image"])
    with pytest.raises(DataError, match="unknown augmentation strength 'extreme'"):
        build_transforms(16, train=True, strength="extreme")
    with pytest.raises(DataError, match="input size"):
        build_transforms(0)


def test_custom_compose(tmp_path: Path) -> None:
    flip = A.Compose([A.VerticalFlip(p=1.0)])
    ds = SegmentationDataset(_pair_dir(tmp_path), size=16, augment=flip)
    item = ds[0]
    assert item["mask"][0, 0].eq(1).all() and item["mask"][0, -1].eq(0).all()


def test_cache_and_preload(tmp_path: Path) -> None:
    samples = _pair_dir(tmp_path)
    ds = SegmentationDataset(samples, size=16, cache=True)
    first = ds[0]
    (tmp_path / "images" / "s0.png").unlink()  # decoded once: still served from memory
    assert torch.equal(ds[0]["image"], first["image"])
    ds2 = SegmentationDataset(samples[1:], size=16)
    ds2.preload()
    assert len(ds2._cache) == 2


def test_errors(tmp_path: Path) -> None:
    samples = _pair_dir(tmp_path)
    with pytest.raises(DataError, match="no mask"):
        SegmentationDataset([Sample(samples[0].image_path, None, "x")])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(samples[0].mask_path, format="JPEG")
    ds = SegmentationDataset(samples, size=16)
    with pytest.raises(DataError, match=r"s0.jpg: mask is 5x5 but image .*s0.png is 24x20"):
        ds[0]


def test_seeded_pipeline_reproducible_and_uncorrelated() -> None:
    img = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    m = np.zeros((40, 40), np.float32)
    m[20:] = 1
    runs = []
    for seed in (5, 5, 6):
        t = build_transforms(32, train=True, strength="heavy", seed=seed)
        runs.append([t(image=img, mask=m)["image"] for _ in range(3)])
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(runs[0], runs[2], strict=True))
    # every step draws from one shared generator (albumentations' seed=... gives each step an
    # identical stream, so e.g. flip and grayscale would always fire together)
    t = build_transforms(32, train=True, seed=0)
    gens = {id(step.py_random) for step in t.transforms}
    assert len(gens) == 1


def test_dataloader_workers_get_different_augmentations(tmp_path: Path) -> None:
    sample = _pair_dir(tmp_path, n=1)[0]
    ds = SegmentationDataset([sample] * 4, size=24, augment=True, strength="heavy", seed=0)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    items = [b["image"][0] for b in loader]
    # items 0 and 1 are each the first draw of a different worker
    assert not torch.equal(items[0], items[1])


def test_validation_preprocesses_like_the_segmenter(tmp_path: Path) -> None:
    """Training-time validation and the Segmenter feed the model the same tensor: the model
    config's mean/std, area filtering when shrinking (not the bilinear resize of training)."""
    import cv2

    from abanet.data.preprocess import resolve_data_config
    from abanet.inference.segmenter import Segmenter
    from abanet.models.hub import load_model
    from tests.fixtures import ellipse_dataset, tiny_saved_model

    model = load_model(tiny_saved_model(tmp_path / "m"))
    model.config.mean, model.config.std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    samples, _ = read_folders(ellipse_dataset(tmp_path / "d", n=1, size=200))
    data_config = resolve_data_config(model.config)
    ds = SegmentationDataset(samples, data_config.size, data_config.mean, data_config.std)

    seen: list[torch.Tensor] = []

    class Recorder:
        def run(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 1, *x.shape[2:])

    segmenter = Segmenter(model, device="cpu", detector=None)
    segmenter._backend = Recorder()
    image = np.asarray(Image.open(samples[0].image_path).convert("RGB"))
    segmenter.segment(image, whole_image=True)
    assert data_config.size < 200  # shrinking
    torch.testing.assert_close(ds[0]["image"], seen[0][0], atol=1e-5, rtol=0)
    bilinear = cv2.resize(image, (data_config.size,) * 2, interpolation=cv2.INTER_LINEAR)
    assert not np.allclose(data_config.normalize(bilinear).transpose(2, 0, 1), seen[0][0].numpy())
