"""abanet data stats: numbers against a hand-made dataset, faces per photo, files and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abanet.data.stats import (
    colour_name,
    dataset_stats,
    dominant_colour,
    prefix_types,
    stats_markdown,
    write_stats,
)
from abanet.errors import AbanetError
from abanet.faces.types import Face, FaceDetector
from abanet.plots.dataset import stats_figures

RED, WHITE, BLUE = (200, 30, 40), (240, 240, 240), (40, 80, 170)


def _save(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    Image.fromarray(image).save(root / "images" / name)
    Image.fromarray(mask * np.uint8(255)).save(root / "masks" / name)


def hand_dataset(root: Path) -> Path:
    """Three pairs whose statistics are known by hand.

    cwm_a: 40x20, a red 10x10 square at the bottom left (12.5 % of the image)
    iwm_b: 20x20, the right half white (50 %)
    cwm_c: 20x20, the bottom-left 10x10 quarter: 7 rows blue over 3 rows white (25 %)
    """
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, m = np.full((20, 40, 3), 90, np.uint8), np.zeros((20, 40), np.uint8)
    img[10:20, 0:10], m[10:20, 0:10] = RED, 1
    _save(root, "cwm_a.png", img, m)
    img, m = np.full((20, 20, 3), 90, np.uint8), np.zeros((20, 20), np.uint8)
    img[:, 10:], m[:, 10:] = WHITE, 1
    _save(root, "iwm_b.png", img, m)
    img, m = np.full((20, 20, 3), 90, np.uint8), np.zeros((20, 20), np.uint8)
    img[10:17, 0:10], img[17:20, 0:10], m[10:20, 0:10] = BLUE, WHITE, 1
    _save(root, "cwm_c.png", img, m)
    return root


def test_numbers_of_a_hand_made_dataset(tmp_path: Path) -> None:
    stats = dataset_stats(hand_dataset(tmp_path / "d"), faces=False)
    by = {s.name: s for s in stats.images}
    a = by["cwm_a.png"]
    assert (a.width, a.height, a.mask_fraction) == (40, 20, 0.125)
    assert a.centroid == pytest.approx((5 / 40, 15 / 20))  # pixel centres 0.5..9.5, 10.5..19.5
    assert a.extent == pytest.approx((0.5, 1.0))
    assert [by[n].colour for n in ("cwm_a.png", "iwm_b.png", "cwm_c.png")] == [
        "red",
        "white",
        "blue",
    ]
    assert by["cwm_c.png"].rgb == BLUE  # 7 blue rows outweigh 3 white ones
    assert stats.counts("mask_type") == {"correctly worn": 2, "incorrectly worn": 1}
    # heat map: bottom-left covered by a and c, top-right by b alone
    assert stats.heat[-1, 0] == pytest.approx(2 / 3)
    assert stats.heat[0, -1] == pytest.approx(1 / 3)
    assert stats.photo_faces == {} and "--no-faces" in stats.faces_note
    md = stats_markdown(stats)
    assert "labelled images: 3" in md
    assert "mean 29.2 %, median 25.0 %" in md  # (12.5 + 50 + 25) / 3
    assert "| 20x20 | 2 | 66.7 % |" in md and "| 40x20 | 1 | 33.3 % |" in md
    assert "| red | 1 | 33.3 % |" in md and "| blue | 1 | 33.3 % |" in md
    assert "| correctly worn | 2 | 66.7 % |" in md


def test_colour_names_and_types_rules() -> None:
    assert colour_name((235, 235, 238)) == "white"
    assert colour_name((20, 20, 25)) == "black"
    assert colour_name((150, 195, 225)) == "light blue"
    image = np.zeros((4, 4, 3), np.uint8)
    assert dominant_colour(image, np.zeros((4, 4), np.uint8)) is None
    assert prefix_types(["cwm_1.jpg", "IWM_2.jpg"]) == {
        "cwm_1.jpg": "correctly worn",
        "IWM_2.jpg": "incorrectly worn",
    }
    assert prefix_types(["cwm_1.jpg", "faceMask_2.jpg"]) == {}  # not every name: no types


class TwoFaces(FaceDetector):
    """Finds nothing around a padded crop and two 20x20 faces in a 100x100 photo."""

    name = "two"

    def _detect(self, image_rgb: np.ndarray) -> list[Face]:
        if image_rgb.shape[:2] != (100, 100):
            return []
        return [Face((10, 10, 30, 30), 0.9), Face((60, 10, 80, 30), 0.8)]


def test_faces_per_photo_count_masked_faces(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    m = np.zeros((100, 100), np.uint8)
    m[18:34, 5:35] = 1  # covers the first face's mouth (lower part of its crop), not the second
    for name in ("p1.png", "p2.png"):
        _save(root, name, np.full((100, 100, 3), 120, np.uint8), m)
    stats = dataset_stats(root, detector=TwoFaces(), types=None)
    assert stats.photo_faces == {"p1.png": (2, 1), "p2.png": (2, 1)}
    md = stats_markdown(stats)
    assert "2 photos, 4 faces (2 masked)" in md
    assert "| 2 | 2 | 0 |" in md and "| 1 | 0 | 2 |" in md
    figs = stats_figures(stats)
    assert "faces" in figs and "types" not in figs  # no type prefixes here
    legend = figs["faces"].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["faces", "masked faces"]


def test_cli_writes_figures_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abanet.cli.main import app

    data = hand_dataset(tmp_path / "d")
    types = tmp_path / "types.csv"
    types.write_text("image,type\ncwm_a.png,surgical\niwm_b.png,cloth\ncwm_c,surgical\n")
    out = tmp_path / "st"
    args = ["data", "stats", str(data), "-o", str(out), "--no-faces", "--types", str(types)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    for name in ("sizes", "area", "heatmap", "colours", "types", "overview"):
        with Image.open(out / f"{name}.png") as im:
            assert im.format == "PNG"
            assert im.size == ((1200, 680) if name == "overview" else (550, 420))
    assert not (out / "faces.png").exists()  # not counted: no panel of its own
    md = (out / "stats.md").read_text()
    assert "| surgical | 2 | 66.7 % |" in md and "![heatmap](heatmap.png)" in md
    assert len((out / "per_image.csv").read_text().splitlines()) == 4
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "holds statistics already" in r.output
    with pytest.raises(AbanetError, match="needs columns image,type"):
        types.write_text("name,kind\n")
        dataset_stats(data, faces=False, types=types)


def test_pie_legend_names_each_colour(tmp_path: Path) -> None:
    stats = dataset_stats(hand_dataset(tmp_path / "d"), faces=False)
    files = write_stats(stats, tmp_path / "out")
    assert files["stats"].name == "stats.md"
    legend = stats_figures(stats)["colours"].axes[0].get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == [
        "blue: 1 (33 %)",
        "red: 1 (33 %)",
        "white: 1 (33 %)",
    ]
