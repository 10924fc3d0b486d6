"""The annotation loop: ``predict --labelme`` / ``--coco`` and reading them back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from abanet.cli.main import app
from abanet.data.io import read_mask
from abanet.inference.predict import predict_files
from abanet.inference.segmenter import Segmenter
from abanet.models.base import SegmentationModel
from abanet.models.config import ModelConfig
from tests.fixtures import tiny_saved_model, write_rgb

runner = CliRunner()

#: keys LabelMe's ``LabelFile.load`` reads from a file and from each shape
LABELME_KEYS = {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
SHAPE_KEYS = {"label", "points", "shape_type", "flags", "group_id", "description", "mask"}


class BlobsModel(SegmentationModel):
    """Logits +8 inside an ellipse and a small disc (two mask regions), -8 elsewhere."""

    def __init__(self) -> None:
        super().__init__(ModelConfig(name="blobs", input_size=128, size_divisor=32))
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ellipse = ((xx - 0.45 * w) / (0.3 * w)) ** 2 + ((yy - 0.6 * h) / (0.22 * h)) ** 2 <= 1
        disc = (xx - 0.85 * w) ** 2 + (yy - 0.15 * h) ** 2 <= (0.08 * w) ** 2
        inside = (ellipse | disc).float()
        return [(inside * 16 - 8 + self.anchor).expand(x.shape[0], 1, h, w)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


def predict_blobs(tmp_path: Path, extras: list[str]) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_rgb(photos / "a.jpg", (160, 120))
    write_rgb(photos / "b.png", (90, 130), seed=1)
    seg = Segmenter(BlobsModel(), device="cpu", backend="eager", detector=None)
    out = tmp_path / "review"
    summary = predict_files(seg, [photos], out, extras=extras, whole_image=True, report=print)
    assert summary.ok and len(summary.written) == 2
    return photos, out


def test_labelme_round_trip(tmp_path) -> None:
    photos, out = predict_blobs(tmp_path, ["labelme"])
    doc = json.loads((out / "a.json").read_text())
    assert set(doc) >= LABELME_KEYS and doc["imageData"] is None
    assert (doc["imageHeight"], doc["imageWidth"]) == (120, 160)
    assert len(doc["shapes"]) == 2  # one polygon per mask region
    for shape in doc["shapes"]:
        assert set(shape) >= SHAPE_KEYS
        assert shape["label"] == "mask" and shape["shape_type"] == "polygon"
    assert doc["imagePath"] == "../photos/a.jpg"  # relative to the json's folder
    assert (out / doc["imagePath"]).resolve() == (photos / "a.jpg").resolve()

    res = runner.invoke(app, ["data", "convert-labelme", str(out), str(tmp_path / "labelled")])
    assert res.exit_code == 0, res.output
    for stem in ("a", "b"):
        back = read_mask(tmp_path / "labelled" / "masks" / f"{stem}.png")
        assert iou(back, read_mask(out / f"{stem}.png")) >= 0.99
    assert (tmp_path / "labelled" / "images" / "a.jpg").read_bytes() == (
        photos / "a.jpg"
    ).read_bytes()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools decode, numpy 2
def test_coco_round_trip(tmp_path) -> None:
    from pycocotools.coco import COCO

    from abanet.data.labelme_export import write_coco

    photos, out = predict_blobs(tmp_path, [])
    pairs = [(photos / "a.jpg", out / "a.png"), (photos / "b.png", out / "b.png")]
    coco_path = write_coco(pairs, out / "coco.json")
    coco = COCO(str(coco_path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["mask"]
    for image in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(anns) == 2 and all(a["iscrowd"] == 0 for a in anns)
        union = np.maximum.reduce([coco.annToMask(a) for a in anns])
        expected = read_mask(out / (Path(image["file_name"]).stem + ".png"))
        assert union.shape == (image["height"], image["width"])
        assert iou(union, expected) >= 0.99
        assert (coco_path.parent / image["file_name"]).resolve().parent == photos.resolve()


def test_cli_labelme_and_coco_flags(tmp_path) -> None:
    model = str(tiny_saved_model(tmp_path / "model"))
    image = write_rgb(tmp_path / "x.jpg", (40, 32))
    out, coco = tmp_path / "out", tmp_path / "out" / "instances.json"
    args = ["predict", str(image), "-o", str(out), "--model", model, "--whole-image", "-q"]
    res = runner.invoke(app, [*args, "--backend", "eager", "--labelme", "--coco", str(coco)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "x.json").read_text())["imagePath"] == "../x.jpg"
    assert json.loads(coco.read_text())["images"][0]["file_name"] == "../x.jpg"
    assert Image.open(out / "x.png").size == (40, 32)
    again = runner.invoke(app, [*args, "--backend", "eager", "--coco", str(coco)])
    assert again.exit_code == 0 and "exists, skipped" in again.output  # never overwritten
    clash = runner.invoke(app, [*args, "--backend", "eager", "--labelme", "--json", "--overwrite"])
    assert clash.exit_code == 2 and "choose one" in clash.output
