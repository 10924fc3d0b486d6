"""abanet evaluate: protocol values on hand-computable cases, files, compare join, grid."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from abanet.engine.evaluation import compare_with, evaluate, read_baselines
from abanet.errors import AbanetError
from abanet.models import ModelConfig, SegmentationModel
from abanet.plots.grid import GRID_HEADER, error_map, fit_tile, grid_size

pytestmark = pytest.mark.usefixtures("one_thread")


class Oracle(SegmentationModel):
    """Reads the mask back from the image: pixels whose red value is above 0.5 are mask.
    ``mode='zero'`` predicts nothing anywhere."""

    def __init__(self, size: int = 64, mode: str = "oracle") -> None:
        super().__init__(ModelConfig(name="oracle", input_size=size, size_divisor=16))
        self.mode = mode
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        red = x[:, :1] * self.config.std[0] + self.config.mean[0]
        if self.mode == "zero":
            return [torch.full_like(red, -10.0)]
        return [torch.where(red > 0.5, 10.0, -10.0) + 0 * self.dummy]


def make_dataset(root: Path, n: int = 6, h: int = 64, w: int = 64) -> tuple[Path, list[float]]:
    """PNG pairs: the mask region is pure red, the rest dark. Returns the foreground fractions."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    fractions = []
    for i in range(n):
        m = np.zeros((h, w), np.uint8)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        m[y0 : y0 + h // 3 + i, x0 : x0 + w // 3] = 255
        img = (rng.random((h, w, 3)) * 80).astype(np.uint8)
        img[m > 0] = (255, 0, 0)
        Image.fromarray(img).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(m).save(root / "masks" / f"img{i:02d}.png")
        fractions.append(float((m > 127).mean()))
    return root, fractions


def test_perfect_predictor_scores_one_and_writes_files(tmp_path: Path) -> None:
    data, _ = make_dataset(tmp_path / "d")
    out = tmp_path / "eval"
    res = evaluate(Oracle(), data, out, batch_size=4, device="cpu")
    m = res.metrics
    for k in ("iou", "f1", "precision", "recall", "accuracy", "dataset_iou"):
        assert m[k] == pytest.approx(1.0), k
    assert m["mae"] == pytest.approx(float(torch.sigmoid(torch.tensor(-10.0))), rel=1e-3)
    assert m["smeasure"] > 0.99
    assert m["images"] == 6
    for name in ("per_image.csv", "summary.json", "summary.md"):
        assert (out / name).is_file()
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert [r["image"] for r in rows] == [f"img{i:02d}.png" for i in range(6)]
    assert list(rows[0])[:6] == ["image", "accuracy", "f1", "iou", "precision", "recall"]
    assert all(float(r["iou"]) == pytest.approx(1.0) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 6 and summary["input_size"] == 64
    assert summary["metrics"]["iou"] == pytest.approx(1.0)
    assert summary["fps"] > 0
    assert "| 100.000 | 100.000 |" in (out / "summary.md").read_text()
    with pytest.raises(AbanetError, match="summary.json"):
        evaluate(Oracle(), data, out, device="cpu")


def test_empty_predictor_has_hand_computed_scores(tmp_path: Path) -> None:
    data, fractions = make_dataset(tmp_path / "d")
    res = evaluate(Oracle(mode="zero"), data, None, device="cpu", structure=False)
    m = res.metrics
    assert m["iou"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["precision"] == 1.0  # empty prediction: 0/0 precision counts as 1
    assert m["accuracy"] == pytest.approx(1 - np.mean(fractions), abs=1e-9)
    assert m["mae"] == pytest.approx(np.mean(fractions), abs=1e-3)
    assert "smeasure" not in m


def test_resize_back_to_mask_size(tmp_path: Path) -> None:
    """Non-square 80x60 crops go in at 64x64 and come back at 80x60 before scoring."""
    data, _ = make_dataset(tmp_path / "d", n=3, h=60, w=80)
    res = evaluate(Oracle(), data, None, device="cpu", structure=False)
    assert res.metrics["iou"] > 0.9
    assert res.metrics["images"] == 3


def test_size_must_fit_divisor_and_split_subset(tmp_path: Path) -> None:
    data, _ = make_dataset(tmp_path / "d")
    with pytest.raises(AbanetError, match="not a multiple of 16; nearest valid size is 48"):
        evaluate(Oracle(), data, None, size=50, device="cpu")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["img00.png"], "test": ["img01.png", "img02"]}))
    res = evaluate(Oracle(), data, None, split=split, subset="test", device="cpu")
    assert [r["image"] for r in res.per_image] == ["img01.png", "img02.png"]
    with pytest.raises(AbanetError, match="no 'val' list"):
        evaluate(Oracle(), data, None, split=split, subset="val", device="cpu")


def test_compare_joins_by_image_name(tmp_path: Path) -> None:
    data, _ = make_dataset(tmp_path / "d", n=3)
    base = tmp_path / "baselines.csv"
    base.write_text(
        "model,encoder,image,accuracy,f1,iou,precision,recall\n"
        "Unet,resnet50,img00.png,0.9,0.8,0.6,0.7,0.9\n"
        "Unet,resnet50,IMG01.JPG,0.9,0.8,0.8,0.7,0.9\n"  # matched by case-insensitive stem
        "Unet,resnet50,other.png,0.1,0.1,0.1,0.1,0.1\n"  # not in our data
        "PAN,vgg19,img02.png,1.0,1.0,0.5,1.0,1.0\n"
    )
    out = tmp_path / "eval"
    res = evaluate(Oracle(), data, out, compare=base, device="cpu")
    rows = {(r["model"], r["encoder"]): r for r in res.compare}
    unet = rows[("Unet", "resnet50")]
    assert unet["listed"] == 3 and unet["matched"] == 2
    assert unet["iou"] == pytest.approx(0.7)
    assert unet["ours_iou"] == pytest.approx(1.0)
    assert rows[("PAN", "vgg19")]["matched"] == 1
    assert res.compare[0]["model"] == "Unet"  # sorted by baseline IoU
    assert res.compare[-1]["model"].startswith("ours") and res.compare[-1]["matched"] == 0
    assert res.summary["compare"]["baseline_groups"] == 2
    text = (out / "compare.csv").read_text().splitlines()
    assert text[0].startswith("model,encoder,listed,matched,iou,")
    assert "Beside the baselines" in (out / "summary.md").read_text()


def test_compare_with_pure_rows_and_bad_file(tmp_path: Path) -> None:
    ours = [{"image": "a.png", "iou": 0.5, "f1": 0.6}, {"image": "b.png", "iou": 1.0, "f1": 1.0}]
    base = [
        {"model": "M", "encoder": "", "image": "a.png", "iou": 0.25, "f1": 0.4},
        {"model": "M", "encoder": "", "image": "b.png", "iou": 0.75, "f1": 0.8},
    ]
    rows, info = compare_with(ours, base)
    assert rows[0]["iou"] == pytest.approx(0.5) and rows[0]["ours_iou"] == pytest.approx(0.75)
    assert rows[-1]["matched"] == 2 and info["matched_by_all"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("name,iou\na,1\n")
    with pytest.raises(AbanetError, match="needs columns model,image"):
        read_baselines(bad)
    bad.write_text("model,image,iou\nM,a,high\n")
    with pytest.raises(AbanetError, match="line 2: iou is not a number"):
        read_baselines(bad)
    with pytest.raises(AbanetError, match="not found"):
        read_baselines(tmp_path / "missing.csv")


def test_grid_png_size_and_worst_rows(tmp_path: Path) -> None:
    data, _ = make_dataset(tmp_path / "d", n=5)
    grid = tmp_path / "grid.png"
    res = evaluate(
        Oracle(mode="zero"),
        data,
        None,
        grid=grid,
        grid_worst=3,
        grid_tile=64,
        device="cpu",
        structure=False,
    )
    with Image.open(grid) as im:
        assert im.format == "PNG"
        assert im.size == grid_size(3, 64) == (256, GRID_HEADER + 3 * 64)
        px = np.asarray(im.convert("RGB"))
    assert res.files["grid"] == grid
    done: list[tuple[int, int]] = []
    evaluate(Oracle(), data, None, batch_size=2, progress=lambda *a: done.append(a), device="cpu")
    assert done == [(0, 5), (2, 5), (4, 5), (5, 5)]
    # the 3 worst of an empty prediction: every mask pixel is a false negative (blue); the error
    # tiles are drawn pixel for pixel (the lower half: below the caption and the legend)
    worst = sorted(res.per_image, key=lambda r: (r["iou"], r["image"]))[:3]
    for r, row in enumerate(worst):
        gt = (np.asarray(Image.open(data / "masks" / row["image"])) > 127).astype(np.uint8)
        want = fit_tile(error_map(np.zeros_like(gt), gt), 64, True)
        y = GRID_HEADER + r * 64
        assert np.array_equal(px[y + 32 : y + 64, 192:256], want[32:])
    res = evaluate(
        Oracle(),
        data,
        None,
        grid=tmp_path / "g2.png",
        grid_rows=2,
        grid_tile=16,
        device="cpu",
        structure=False,
    )
    with Image.open(tmp_path / "g2.png") as im:
        assert im.size == grid_size(2, 16)


def test_compare_grid_has_a_legend_on_every_error_map(tmp_path: Path) -> None:
    from abanet.plots.grid import GridRow, grid_figure

    data, _ = make_dataset(tmp_path / "d", n=4)
    path = tmp_path / "cmp.png"
    res = evaluate(
        Oracle(),
        data,
        None,
        grid_rows=3,
        grid_tile=48,
        compare_grid=path,
        grid_models=[("empty", Oracle(mode="zero"))],
        label="oracle",
        device="cpu",
        structure=False,
    )
    assert res.files["compare_grid"] == path
    with Image.open(path) as im:  # image, ground truth, one error map per model
        assert im.size == grid_size(3, 48, columns=4)
    # the figure behind it: a TP / FP / FN legend on each error map, none elsewhere
    gt = np.zeros((8, 8), np.uint8)
    gt[2:6, 2:6] = 1
    row = GridRow(np.zeros((8, 8, 3), np.uint8), gt, [gt, 1 - gt], ["IoU 1", "IoU 0"], "a")
    fig = grid_figure([row, row], ["A", "B"], tile=96, masks=False)
    legends = [ax.get_legend() for ax in fig.axes]
    texts = [[t.get_text() for t in lg.get_texts()] for lg in legends if lg is not None]
    assert texts == [["TP", "FP", "FN"]] * 4
    assert [t.get_text() for t in fig.texts] == ["image", "ground truth", "A", "B"]
    row.preds, row.captions = row.preds[:1], row.captions[:1]
    single = grid_figure([row], ["prediction"], tile=96)
    assert [t.get_text() for t in single.texts] == ["image", "ground truth", "prediction", "error"]
    assert sum(ax.get_legend() is not None for ax in single.axes) == 1
    with pytest.raises(AbanetError, match="needs at least one other model"):
        evaluate(Oracle(), data, None, compare_grid=tmp_path / "x.png", device="cpu")
    with pytest.raises(AbanetError, match="file exists"):
        evaluate(Oracle(), data, None, compare_grid=path, grid_models=[("o", Oracle())])


def test_error_map_colours() -> None:
    pred = np.array([[1, 1], [0, 0]])
    gt = np.array([[1, 0], [1, 0]])
    em = error_map(pred, gt)
    assert em[0, 0].tolist() == [255, 255, 255]  # TP
    assert em[0, 1].tolist() == [255, 0, 0]  # FP red
    assert em[1, 0].tolist() == [0, 0, 255]  # FN blue
    assert em[1, 1].tolist() == [0, 0, 0]  # TN


def test_evaluate_saved_model_through_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import abanet
    from abanet.cli.main import app

    data, _ = make_dataset(tmp_path / "d", n=3)
    model = abanet.create_model("abanet_lite", encoder_weights=None)
    model.config.input_size = 64
    model.save_pretrained(tmp_path / "m")
    out = tmp_path / "eval"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--grid",
            str(tmp_path / "g.png"),
            "--grid-worst",
            "2",
            "--compare-grid",
            str(tmp_path / "cmp.png"),
            "--grid-model",
            f"again={tmp_path / 'm'}",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "3 images" in r.output
    with Image.open(tmp_path / "cmp.png") as im:  # 2 worst crops, 2 models, tiles of 160
        assert im.size == grid_size(2, 160, columns=4)
    r = CliRunner().invoke(
        app,
        ["evaluate", "-m", "x", "-d", str(data), "-o", str(out), "--compare-grid", "c.png"],
    )
    assert r.exit_code == 2 and "--compare-grid needs at least one --grid-model" in r.output
    assert json.loads((out / "summary.json").read_text())["input_size"] == 64
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "nope"),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "e2"),
        ],
    )
    assert r.exit_code == 2 and "no such model" in r.output


def test_fill_holes_and_flip_tta_switches(tmp_path: Path) -> None:
    """A mask whose middle is not red: the oracle leaves a hole that fill_holes closes."""
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 12:52] = 255
    img = np.zeros((64, 64, 3), np.uint8)
    img[m > 0] = (255, 0, 0)
    img[28:36, 28:36] = 0  # the hole
    Image.fromarray(img).save(root / "images" / "a.png")
    Image.fromarray(m).save(root / "masks" / "a.png")
    plain = evaluate(Oracle(), root, None, device="cpu", structure=False)
    assert plain.metrics["iou"] == pytest.approx(1 - 64 / (32 * 40), abs=0.01)
    assert plain.summary["flip_tta"] is False and plain.summary["fill_holes"] is False
    filled = evaluate(Oracle(), root, None, device="cpu", structure=False, fill_holes=True)
    assert filled.metrics["iou"] == pytest.approx(1.0)
    model = Oracle()
    model.config.flip_tta = True  # the config's choice is the default ...
    tta = evaluate(model, root, None, device="cpu", structure=False)
    assert tta.summary["flip_tta"] is True
    assert tta.metrics["iou"] == pytest.approx(plain.metrics["iou"])  # the oracle is mirror-safe
    off = evaluate(model, root, None, device="cpu", structure=False, flip_tta=False)
    assert off.summary["flip_tta"] is False  # ... and an explicit False overrides it


def test_class_index_masks_are_refused_not_scored_as_empty(tmp_path: Path) -> None:
    from abanet.errors import DataError

    data, _ = make_dataset(tmp_path / "d", n=2)
    m = np.asarray(Image.open(data / "masks" / "img01.png")) // 255  # a 0/1 mask
    Image.fromarray(m.astype(np.uint8)).save(data / "masks" / "img01.png")
    with pytest.raises(DataError, match=r"img01\.png: values look like class indices"):
        evaluate(Oracle(), data, None, device="cpu", structure=False)


def test_images_without_masks_are_reported(tmp_path: Path) -> None:
    data, _ = make_dataset(tmp_path / "d", n=3)
    (data / "masks" / "img02.png").unlink()
    res = evaluate(Oracle(), data, tmp_path / "e", device="cpu", structure=False)
    assert res.summary["images"] == 2
    assert res.summary["warnings"] == [
        f"1 of 3 images have no mask and are not scored (e.g. {data / 'images' / 'img02.png'}; "
        f"'abanet data check {data}' lists them)"
    ]
    assert "**warning**: 1 of 3 images have no mask" in (tmp_path / "e" / "summary.md").read_text()


def test_evaluate_cli_prints_the_warnings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abanet.cli.main import app
    from tests.fixtures import ellipse_dataset, tiny_saved_model

    data = ellipse_dataset(tmp_path / "d", n=2)
    (data / "masks" / "img01.png").unlink()
    model = tiny_saved_model(tmp_path / "m")
    args = ["evaluate", "-m", str(model), "-d", str(data), "-o", str(tmp_path / "e")]
    res = CliRunner().invoke(app, [*args, "--no-structure"])
    assert res.exit_code == 0, res.output
    assert "warning: 1 of 2 images have no mask and are not scored" in res.output


def test_evaluate_probabilities_equal_the_segmenters(tmp_path: Path, monkeypatch) -> None:
    """One inference path: evaluate scores exactly what predict / Segmenter ship."""
    import abanet
    from abanet.metrics import SegmentationMetrics
    from tests.fixtures import tiny_saved_model

    data, _ = make_dataset(tmp_path / "d", n=2, h=100, w=90)  # larger than the input: shrinks
    model = abanet.load_model(tiny_saved_model(tmp_path / "m"))
    seen: dict[str, np.ndarray] = {}
    update = SegmentationMetrics.update

    def spy(self, probs, masks, names=None):
        if isinstance(probs, list):  # the batch (update then calls itself per image)
            seen.update({n: p.numpy().copy() for n, p in zip(names, probs, strict=True)})
        return update(self, probs, masks, names=names)

    monkeypatch.setattr(SegmentationMetrics, "update", spy)
    evaluate(model, data, None, device="cpu", structure=False)
    seg = abanet.Segmenter(model, device="cpu", backend="eager", detector=None)
    assert len(seen) == 2
    for name, prob in seen.items():
        image = np.asarray(Image.open(data / "images" / Path(name).name).convert("RGB"))
        expected = seg.segment(image, whole_image=True).prob  # batch of 1: float rounding only
        np.testing.assert_allclose(prob, expected, rtol=0, atol=1e-6)
