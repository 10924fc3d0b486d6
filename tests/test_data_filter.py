"""``abanet data filter``: keep photos with a masked face, report the rest, resume, no overwrite."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from abanet.cli.main import app
from abanet.data.photo_filter import (
    BARE,
    KEPT,
    NO_FACE,
    REPORT_COLUMNS,
    UNREADABLE,
    decide,
    filter_photos,
    read_report,
)
from abanet.errors import DataError, UsageError
from abanet.inference.segmenter import Segmenter
from tests.fixtures import BoxDetector, DarkIsBareModel

runner = CliRunner()
W, H = 96, 72
FACE = (30.0, 16.0, 60.0, 46.0)


def stand_in_segmenter() -> Segmenter:
    """The pipeline with a stand-in model (the lower half of a face crop is mask, unless the crop
    is dark: a bare face) and a detector that finds a face in a textured image, none in a flat
    one."""
    seg = Segmenter(DarkIsBareModel(), device="cpu", backend="eager", detector=None)
    seg.detector_name, seg._detector = "box", BoxDetector(FACE, min_std=3.0)
    return seg


def make_photos(root: Path) -> Path:
    """masked.png (bright, a face), sub/bare.png (dark, a face), flat.png (no face), broken.jpg."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(120, 255, (H, W, 3), dtype=np.uint8)).save(root / "masked.png")
    Image.fromarray(rng.integers(0, 20, (H, W, 3), dtype=np.uint8)).save(root / "sub" / "bare.png")
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(root / "flat.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {r["photo"]: r for r in csv.DictReader(fh)}


def test_decide_by_hand() -> None:
    assert decide(()) == NO_FACE
    assert decide((0.49, 0.1)) == BARE
    assert decide((0.1, 0.5)) == KEPT  # the threshold is inclusive
    assert decide((0.4,), min_mask_score=0.3) == KEPT


def test_filter_keeps_masked_faces_and_reports_every_photo(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "kept"
    summary = filter_photos(stand_in_segmenter(), [photos], out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "filter_report.csv",
        "masked.png",
    ]
    assert (out / "masked.png").read_bytes() == (photos / "masked.png").read_bytes()
    report = rows(out / "filter_report.csv")
    assert set(report) == {"masked.png", "sub/bare.png", "flat.png", "broken.jpg"}
    masked, bare = report["masked.png"], report["sub/bare.png"]
    assert (masked["kept"], masked["reason"], masked["faces"]) == ("yes", KEPT, "1")
    assert float(masked["mask_scores"]) > 0.99  # the mouth lies in the painted lower half
    assert (bare["kept"], bare["reason"], bare["faces"]) == ("no", BARE, "1")
    assert float(bare["mask_scores"]) < 0.01
    assert (report["flat.png"]["reason"], report["flat.png"]["mask_scores"]) == (NO_FACE, "")
    assert report["broken.jpg"]["reason"] == UNREADABLE
    assert report["broken.jpg"]["detail"].startswith("cannot read image (")
    assert {r["min_mask_score"] for r in report.values()} == {"0.5"}
    assert summary.placed == 1 and summary.existed == 0 and summary.resumed == 0
    assert summary.line().startswith(
        "4 photos: 1 kept (1 placed, 0 already there), 3 dropped (1 no face, 1 only bare faces, "
        "1 unreadable)"
    )


def test_existing_files_are_kept_unless_overwrite(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "kept"
    out.mkdir()
    (out / "masked.png").write_bytes(b"mine")
    summary = filter_photos(stand_in_segmenter(), [photos], out)
    assert (out / "masked.png").read_bytes() == b"mine"
    assert (summary.placed, summary.existed) == (0, 1)
    again = filter_photos(stand_in_segmenter(), [photos], out, overwrite=True)
    assert (out / "masked.png").read_bytes() == (photos / "masked.png").read_bytes()
    assert (again.placed, again.resumed) == (1, 0)  # --overwrite starts over


def test_resume_judges_only_what_the_report_lacks(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "kept"
    first = stand_in_segmenter()
    filter_photos(first, [photos], out)
    assert first.detector.calls == 3  # the unreadable file never reaches the detector
    report = out / "filter_report.csv"
    lines = report.read_text().splitlines(keepends=True)
    assert [line.split(",")[0] for line in lines[1:]] == [
        "broken.jpg",
        "flat.png",
        "masked.png",
        "sub/bare.png",
    ]
    # an interrupted run: three photos listed, the fourth one's line half written
    report.write_text("".join(lines[:4]) + lines[4][:10])
    (out / "masked.png").unlink()
    seg = stand_in_segmenter()
    summary = filter_photos(seg, [photos], out)
    assert (summary.resumed, summary.placed, len(summary.verdicts)) == (3, 1, 4)
    assert seg.detector.calls == 1  # only sub/bare.png is judged again
    listed = [v.photo for v in read_report(report)]
    assert sorted(listed) == ["broken.jpg", "flat.png", "masked.png", "sub/bare.png"]
    assert (out / "masked.png").exists()  # a kept photo missing from OUT is placed again
    again = stand_in_segmenter()
    assert filter_photos(again, [photos], out).resumed == 4 and again.detector.calls == 0
    with pytest.raises(UsageError, match="made with --min-mask-score 0.5"):
        filter_photos(stand_in_segmenter(), [photos], out, min_mask_score=0.3)


def test_links_and_bad_reports(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    hard, soft = tmp_path / "hard", tmp_path / "soft"
    filter_photos(stand_in_segmenter(), [photos], hard, mode="hardlink")
    assert os.path.samefile(hard / "masked.png", photos / "masked.png")
    filter_photos(stand_in_segmenter(), [photos], soft, mode="symlink")
    assert (soft / "masked.png").is_symlink()
    assert (soft / "masked.png").resolve() == (photos / "masked.png").resolve()
    other = tmp_path / "other"
    other.mkdir()
    (other / "filter_report.csv").write_text("name,size\na,1\n")
    with pytest.raises(DataError, match="filter_report.csv: exists and is not a filter report"):
        filter_photos(stand_in_segmenter(), [photos], other)
    with pytest.raises(UsageError, match="--link 'move'"):
        filter_photos(stand_in_segmenter(), [photos], other, mode="move")


def test_cli_filter(tmp_path: Path, monkeypatch) -> None:
    import abanet.inference.segmenter as segmenter_module

    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "kept"
    monkeypatch.setattr(segmenter_module, "Segmenter", lambda *a, **k: stand_in_segmenter())
    args = ["data", "filter", str(photos), "-o", str(out), "-q"]
    res = runner.invoke(app, [*args, "--report", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    assert "4 photos: 1 kept (1 placed, 0 already there), 3 dropped" in res.output
    assert tuple(next(csv.reader((tmp_path / "r.csv").open()))) == REPORT_COLUMNS
    assert sorted(p.name for p in out.iterdir()) == ["masked.png"]
    res = runner.invoke(app, [*args, "--link", "move"])
    assert res.exit_code == 2 and "--link 'move': choose one of copy, hardlink, symlink" in (
        res.output
    )
    res = runner.invoke(app, ["data", "filter", str(tmp_path / "nope"), "-o", str(out), "-q"])
    assert res.exit_code == 1 and "nope: no such file or folder" in res.output
