"""`abanet data check / split / convert-labelme`: every problem named, exit codes, JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from abanet.data.check import check_dataset
from abanet.data.readers import open_dataset
from abanet.data.splits import load_folds, load_split, split_leaks


def _app() -> typer.Typer:
    from abanet.cli.main import app

    return app


def _disk(n: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return ((((yy - n / 2) ** 2 + (xx - n / 2) ** 2) < (n / 3) ** 2) * 255).astype(np.uint8)


def _rgb(seed: int, n: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, n, 3), dtype=np.uint8)


def _good_dataset(root: Path, count: int = 4) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        Image.fromarray(_rgb(i)).save(root / "images" / f"faceMsak_p{i % 3}_0_0_{i}.png")
        Image.fromarray(_disk()).save(root / "masks" / f"faceMsak_p{i % 3}_0_0_{i}.jpg", quality=75)
    return root


def _bad_dataset(root: Path) -> Path:
    img, msk = root / "images", root / "masks"
    img.mkdir(parents=True)
    msk.mkdir()
    # a good pair with a noisy JPEG mask (must NOT be reported)
    Image.fromarray(_rgb(0)).save(img / "good.png")
    Image.fromarray(_disk()).save(msk / "good.jpg", quality=70)
    # missing pair (image without mask) and orphan mask
    Image.fromarray(_rgb(1)).save(img / "nomask.png")
    Image.fromarray(_disk()).save(msk / "orphan.png")
    # size mismatch
    Image.fromarray(_rgb(2)).save(img / "sizes.png")
    Image.fromarray(_disk(12)).save(msk / "sizes.png")
    # non-binary mask (a gradient)
    Image.fromarray(_rgb(3)).save(img / "gradient.png")
    Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))).save(
        msk / "gradient.png"
    )
    # corrupt image
    (img / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 4)
    Image.fromarray(_disk()).save(msk / "corrupt.png")
    # duplicate image bytes
    (img / "copy.png").write_bytes((img / "good.png").read_bytes())
    Image.fromarray(_disk()).save(msk / "copy.png")
    # colour mask and grayscale image
    Image.fromarray(_rgb(4)[:, :, 0]).save(img / "gray.png")
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[4:12, 4:12] = (200, 0, 0)
    Image.fromarray(colour).save(msk / "gray.png")
    # 0/1 mask
    Image.fromarray(_rgb(5)).save(img / "zeroone.png")
    Image.fromarray(_disk() // 255).save(msk / "zeroone.png")
    return root


def test_check_dataset_reports_each_problem(tmp_path: Path) -> None:
    root = _bad_dataset(tmp_path / "bad")
    samples, problems = open_dataset(root)
    report = check_dataset(samples, problems, root=str(root), kind="folders")
    by_file: dict[str, list] = {}
    for p in report.problems:
        by_file.setdefault(Path(p.path).name, []).append(p)
    kinds = {name: {p.kind for p in ps} for name, ps in by_file.items()}
    assert "good.jpg" not in kinds  # JPEG noise in a mask is fine
    assert {k for k in kinds.get("good.png", set())} <= {"duplicate"}
    assert kinds["nomask.png"] == {"unpaired-image"}
    assert kinds["orphan.png"] == {"unpaired-mask"}
    assert "size-mismatch" in kinds["sizes.png"]
    mism = next(p for p in by_file["sizes.png"] if p.kind == "size-mismatch")
    assert mism.message == "mask is 12x12 but image sizes.png is 16x16"
    assert kinds["gradient.png"] == {"not-binary"}
    assert "not binary" in by_file["gradient.png"][0].message
    assert kinds["corrupt.jpg"] == {"unreadable"}
    assert by_file["corrupt.jpg"][0].message.startswith("cannot read image (")
    dups = [p for p in report.problems if p.kind == "duplicate"]
    assert len(dups) == 1
    assert {Path(dups[0].path).name, dups[0].message.rsplit("/", 1)[-1].split(" ")[0]} == {
        "copy.png",
        "good.png",
    }
    assert "same bytes as" in dups[0].message
    gray_msgs = {p.kind: p for p in by_file["gray.png"]}
    assert gray_msgs["channels"].severity in ("warning", "error")
    assert any("grayscale" in p.message for p in by_file["gray.png"])
    assert any("colour mask" in p.message for p in by_file["gray.png"])
    assert "not-binary" in kinds["zeroone.png"]
    assert any("class indices" in p.message for p in by_file["zeroone.png"])
    for p in report.problems:
        assert str(p).startswith(p.path + ": ") and "\n" not in str(p)
        assert "Traceback" not in p.message
    assert report.pairs == 7 and report.samples == 8 and not report.ok


def test_cli_check_clean_exit_0_and_json(tmp_path: Path) -> None:
    root = _good_dataset(tmp_path / "good")
    runner = CliRunner()
    out_json = tmp_path / "report.json"
    res = runner.invoke(_app(), ["data", "check", str(root), "--json", str(out_json)])
    assert res.exit_code == 0, res.output
    assert "OK: 4 pairs, 0 errors, 0 warnings" in res.output
    report = json.loads(out_json.read_text())
    assert report["pairs"] == 4 and report["errors"] == 0 and report["groups"] == 3
    assert report["image_sizes"] == {"16x16": 4}
    # an existing report is not overwritten without --overwrite
    res = runner.invoke(_app(), ["data", "check", str(root), "--json", str(out_json)])
    assert res.exit_code == 2 and "file exists" in res.output
    res = runner.invoke(
        _app(), ["data", "check", str(root), "--json", str(out_json), "--overwrite"]
    )
    assert res.exit_code == 0


def test_cli_check_errors_exit_1(tmp_path: Path) -> None:
    root = _bad_dataset(tmp_path / "bad")
    res = CliRunner().invoke(_app(), ["data", "check", str(root), "--max-problems", "100"])
    assert res.exit_code == 1, res.output
    for name in ("nomask.png", "orphan.png", "sizes.png", "gradient.png", "corrupt.jpg",
                 "copy.png", "zeroone.png"):  # fmt: skip
        assert name in res.output
    assert "FAILED" in res.output and "Traceback" not in res.output


def test_cli_check_bad_path_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["data", "check", str(tmp_path / "nowhere")])
    assert res.exit_code == 2
    assert f"error: {tmp_path / 'nowhere'}: folder not found" in res.output


@pytest.mark.parametrize("extra", [[], ["--preset", "paper"], ["--kfold", "3"]])
def test_cli_split(tmp_path: Path, extra: list[str]) -> None:
    root = _good_dataset(tmp_path / "d", count=9)
    out = tmp_path / "split.json"
    runner = CliRunner()
    res = runner.invoke(_app(), ["data", "split", str(root), "-o", str(out), "--seed", "1", *extra])
    assert res.exit_code == 0, res.output
    if "--kfold" in extra:
        folds = load_folds(out)
        assert len(folds) == 3
        assert sorted(n for f in folds for n in f["val"]) == sorted(
            p.name for p in (root / "images").iterdir()
        )
    else:
        s = load_split(out)
        assert sum(len(v) for v in s.values()) == 9
        assert split_leaks(s, "mfsd-crops") == []
        assert "groups in more than one split: 0" in res.output
    res2 = runner.invoke(_app(), ["data", "split", str(root), "-o", str(out)])
    assert res2.exit_code == 2 and "file exists" in res2.output


def test_cli_split_lists(tmp_path: Path) -> None:
    root = _good_dataset(tmp_path / "d", count=3)
    (tmp_path / "tr.txt").write_text("faceMsak_p0_0_0_0\nfaceMsak_p1_0_0_1.png\n")
    (tmp_path / "te.txt").write_text("faceMsak_p2_0_0_2.png\n")
    out = tmp_path / "s.json"
    res = CliRunner().invoke(
        _app(),
        ["data", "split", str(root), "-o", str(out), "--train-list", str(tmp_path / "tr.txt"),
         "--test-list", str(tmp_path / "te.txt")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert load_split(out) == {
        "train": ["faceMsak_p0_0_0_0.png", "faceMsak_p1_0_0_1.png"],
        "test": ["faceMsak_p2_0_0_2.png"],
    }


def test_cli_convert_labelme(tmp_path: Path) -> None:
    src = tmp_path / "lm"
    src.mkdir()
    Image.fromarray(_rgb(0)).save(src / "a.png")
    doc = {
        "shapes": [{"label": "mask", "points": [[2, 2], [9, 2], [9, 9], [2, 9]]}],
        "imagePath": "a.png",
        "imageHeight": 16,
        "imageWidth": 16,
    }
    (src / "a.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), ["data", "convert-labelme", str(src), str(out)])
    assert res.exit_code == 0, res.output
    assert "1 pairs written" in res.output
    m = np.asarray(Image.open(out / "masks" / "a.png"))
    assert m.sum() == 64 * 255 and m[2, 2] == 255 and m[1, 2] == 0
    res = CliRunner().invoke(_app(), ["data", "check", str(out)])
    assert res.exit_code == 0, res.output


def test_cli_split_keeps_duplicates_together(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(10):  # ten identities, one crop each
        Image.fromarray(_rgb(i)).save(root / "images" / f"faceMsak_p{i}_0_0_0.png")
        Image.fromarray(_disk()).save(root / "masks" / f"faceMsak_p{i}_0_0_0.png")
    img = root / "images"
    a, b = "faceMsak_p0_0_0_0.png", "faceMsak_p7_0_0_0.png"
    (img / b).write_bytes((img / a).read_bytes())  # two identities, same bytes
    separated = 0
    for seed in range(6):
        for flag in ("--merge-duplicates", "--no-merge-duplicates"):
            out = tmp_path / f"s{seed}{flag}.json"
            res = CliRunner().invoke(
                _app(), ["data", "split", str(root), "-o", str(out), "--seed", str(seed),
                         "--ratios", "0.5,0.5", flag],
            )  # fmt: skip
            assert res.exit_code == 0, res.output
            where = {n: k for k, v in load_split(out).items() for n in v}
            if flag == "--merge-duplicates":
                assert "1 sets of identical images kept in one split" in res.output
                assert where[a] == where[b]
            else:
                separated += where[a] != where[b]
    assert separated > 0  # without merging they do get separated
