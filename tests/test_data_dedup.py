"""``abanet data dedup``: exact and near duplicates across folders, dry run, moving pairs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from abanet.cli.main import app
from abanet.data.dedup import (
    MAX_DISTANCE,
    close_pairs,
    duplicate_sets,
    find_duplicates,
    move_duplicates,
    phash_distance,
)
from abanet.data.readers import open_dataset
from abanet.errors import UsageError

runner = CliRunner()


def picture(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (8x8 noise upscaled): distinct pictures have distant hashes."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return small.resize((size, size), Image.Resampling.BICUBIC)


def save_pair(root: Path, name: str, image: Image.Image | bytes) -> None:
    """``root/images/<name>`` and its mask ``root/masks/<stem>.png``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    if isinstance(image, bytes):
        (root / "images" / name).write_bytes(image)
    else:
        image.save(root / "images" / name)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "masks" / f"{Path(name).stem}.png")


def recompressed(image: Image.Image) -> bytes:
    """The picture resized to 3/4 and saved as a JPEG of quality 70."""
    buf = io.BytesIO()
    image.resize((72, 72), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def splits(root: Path) -> tuple[Path, Path]:
    """test/: a.png, c.png; train/: a copy of a (same bytes), a recompressed a, b.png, d.png."""
    test, train = root / "data" / "test", root / "data" / "train"
    save_pair(test, "a.png", picture(0))
    save_pair(test, "c.png", picture(2))
    save_pair(train, "a_copy.png", (test / "images" / "a.png").read_bytes())
    save_pair(train, "a_small.jpg", recompressed(picture(0)))
    save_pair(train, "b.png", picture(1))
    save_pair(train, "d.png", picture(3))
    return test, train


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_exact_and_near_duplicates_across_folders(tmp_path: Path) -> None:
    test, train = splits(tmp_path)
    before = tree(tmp_path / "data")
    report = find_duplicates([test, train])
    assert len(report.entries) == 6 and not report.problems
    assert len(report.groups) == 1
    group = report.groups[0]
    assert group.keep.image == test / "images" / "a.png"  # the first folder's copy is kept
    assert sorted(d.image.name for d in group.duplicates) == ["a_copy.png", "a_small.jpg"]
    assert not group.exact and group.folders == [0, 1] and report.cross_folder() == [group]
    small = next(d for d in group.duplicates if d.image.name == "a_small.jpg")
    assert phash_distance(small.phash, group.keep.phash) <= MAX_DISTANCE
    assert small.files == (train / "images" / "a_small.jpg", train / "masks" / "a_small.png")
    # the distinct pictures are far apart, so they are not grouped
    others = [e.phash for e in report.entries if e.image.stem in ("a", "b", "c", "d")]
    assert min(phash_distance(x, y) for i, x in enumerate(others) for y in others[i + 1 :]) > 12
    exact = find_duplicates([test, train], max_distance=-1)
    assert [sorted(e.image.name for e in g.members) for g in exact.groups] == [
        ["a.png", "a_copy.png"]
    ]
    assert exact.groups[0].exact
    assert tree(tmp_path / "data") == before  # finding moves nothing


def test_close_pairs_by_hand() -> None:
    hashes = [0b0, 0b111, 0b1, (1 << 64) - 1]
    assert close_pairs(hashes, 1) == [(0, 2)]
    assert close_pairs(hashes, 3, block=1) == [(0, 1), (0, 2), (1, 2)]
    assert close_pairs(hashes, 64) == [(i, j) for i in range(4) for j in range(i + 1, 4)]


def test_move_to_takes_masks_along_and_never_replaces(tmp_path: Path) -> None:
    test, train = splits(tmp_path)
    dest = tmp_path / "dups"
    clash = dest / "train" / "masks" / "a_copy.png"
    clash.parent.mkdir(parents=True)
    clash.write_bytes(b"already here")
    summary = move_duplicates(find_duplicates([test, train]), move_to=dest)
    assert summary.moved == [train / "images" / "a_small.jpg"] and summary.files == 2
    assert summary.skipped == [f"{train / 'images' / 'a_copy.png'}: {clash} exists, not moved"]
    assert tree(dest) == [
        "train/images/a_small.jpg",
        "train/masks/a_copy.png",  # the file that was there
        "train/masks/a_small.png",
    ]
    assert clash.read_bytes() == b"already here"
    assert tree(train) == [
        "images/a_copy.png",
        "images/b.png",
        "images/d.png",
        "masks/a_copy.png",
        "masks/b.png",
        "masks/d.png",
    ]
    assert len(tree(test)) == 4  # the kept copy and the other test picture stay


def test_delete_and_plain_folders(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "deep").mkdir(parents=True)
    picture(5).save(photos / "x.png")
    (photos / "deep" / "x_small.jpg").write_bytes(recompressed(picture(5)))
    picture(6).save(photos / "y.png")
    report = find_duplicates([photos])
    assert [sorted(e.image.name for e in g.members) for g in report.groups] == [
        ["x.png", "x_small.jpg"]
    ]
    summary = move_duplicates(report, delete=True)
    assert summary.files == 1 and tree(photos) == ["x.png", "y.png"]
    with pytest.raises(UsageError, match="give one of --move-to DIR and --delete"):
        move_duplicates(report)


def test_check_and_split_use_the_same_exact_duplicates(tmp_path: Path) -> None:
    test, _ = splits(tmp_path)
    save_pair(test, "a_again.png", (test / "images" / "a.png").read_bytes())
    samples, _ = open_dataset(test)
    assert [sorted(s.name for s in d) for d in duplicate_sets(samples)] == [
        ["a.png", "a_again.png"]
    ]
    res = runner.invoke(app, ["data", "check", str(test)])
    assert "[duplicate] images/a_again.png: same bytes as images/a.png" in res.output


def test_cli_dry_run_json_and_move(tmp_path: Path) -> None:
    test, train = splits(tmp_path)
    before = tree(tmp_path / "data")
    out_json = tmp_path / "groups.json"
    res = runner.invoke(
        app, ["data", "dedup", str(test), str(train), "-q", "--json", str(out_json)]
    )
    assert res.exit_code == 0, res.output
    assert "6 images in 2 folder(s): 1 groups of duplicates (0 exact, 1 near), 2 duplicates" in (
        res.output
    )
    assert "keep test/images/a.png" in res.output and "train/images/a_copy.png (same bytes)" in (
        res.output
    )
    assert "dry run: nothing moved" in res.output
    assert tree(tmp_path / "data") == before
    doc = json.loads(out_json.read_text())
    assert doc["groups"][0]["keep"] == "test/images/a.png"
    assert {d["image"]: d["exact"] for d in doc["groups"][0]["duplicates"]} == {
        "train/images/a_copy.png": True,
        "train/images/a_small.jpg": False,
    }
    again = runner.invoke(app, ["data", "dedup", str(test), "-q", "--json", str(out_json)])
    assert again.exit_code == 2 and "groups.json: file exists" in again.output
    dest = tmp_path / "dups"
    res = runner.invoke(app, ["data", "dedup", str(test), str(train), "-q", "--move-to", str(dest)])
    assert res.exit_code == 0 and f"2 duplicates (4 files) moved to {dest}" in res.output
    assert len(tree(dest)) == 4 and len(tree(train)) == 4
    res = runner.invoke(app, ["data", "dedup", str(test), "--move-to", str(dest), "--delete"])
    assert res.exit_code == 2 and "give one of --move-to DIR and --delete" in res.output
