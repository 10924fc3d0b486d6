"""``abanet predict``: inputs, outputs, never-overwrite, error paths and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from abanet.cli.main import app
from tests.fixtures import tiny_saved_model, write_rgb

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return str(tiny_saved_model(tmp_path_factory.mktemp("model") / "tiny"))


def run(*args: str):
    return runner.invoke(app, ["predict", *args, "--backend", "eager", "--quiet"])


def test_files_folders_and_globs(tmp_path, model_dir) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_rgb(src / "a.jpg", (50, 40))
    write_rgb(src / "sub" / "b.png", (30, 60), seed=1)
    single = write_rgb(tmp_path / "c.jpg", (20, 20), seed=2)
    out = tmp_path / "out"
    res = run(str(src), str(single), "-o", str(out), "--model", model_dir, "--whole-image")
    assert res.exit_code == 0, res.output
    assert Image.open(out / "a.png").size == (50, 40)
    assert Image.open(out / "sub" / "b.png").size == (30, 60)
    mask = np.asarray(Image.open(out / "c.png"))
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
    out2 = tmp_path / "out2"
    res = run(str(src / "*.jpg"), "-o", str(out2), "--model", model_dir, "--whole-image")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out2.iterdir()) == ["a.png"]


def test_extra_outputs(tmp_path, model_dir) -> None:
    image = write_rgb(tmp_path / "x.jpg", (40, 32))
    out = tmp_path / "out"
    res = run(
        str(image),
        "-o",
        str(out),
        "--model",
        model_dir,
        "--whole-image",
        "--soft",
        "--overlay",
        "--cutout",
        "--json",
    )
    assert res.exit_code == 0, res.output
    assert Image.open(out / "x_overlay.jpg").size == (40, 32)
    cut = Image.open(out / "x_cutout.png")
    assert cut.mode == "RGBA" and cut.size == (40, 32)
    record = json.loads((out / "x.json").read_text())
    assert record["image"].endswith("x.jpg") and "faces" in record


def test_never_overwrites_without_flag(tmp_path, model_dir) -> None:
    image = write_rgb(tmp_path / "x.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"precious")
    res = run(str(image), "-o", str(out), "--model", model_dir, "--whole-image")
    assert res.exit_code == 0
    assert "exists" in res.output and (out / "x.png").read_bytes() == b"precious"
    res = run(str(image), "-o", str(out), "--model", model_dir, "--whole-image", "--overwrite")
    assert res.exit_code == 0 and (out / "x.png").read_bytes() != b"precious"


def test_unreadable_file_is_reported_skipped_and_exit_nonzero(tmp_path, model_dir) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "good.jpg")
    (src / "bad.jpg").write_bytes(b"garbage")
    out = tmp_path / "out"
    res = run(str(src), "-o", str(out), "--model", model_dir, "--whole-image")
    assert res.exit_code == 1
    assert "bad.jpg" in res.output and "1 failed" in res.output
    assert (out / "good.png").exists() and not (out / "bad.png").exists()


def test_missing_input_and_unknown_model(tmp_path, model_dir) -> None:
    res = run(str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o"), "--model", model_dir)
    assert res.exit_code == 1 and "no such file" in res.output
    image = write_rgb(tmp_path / "x.jpg")
    res = run(str(image), "-o", str(tmp_path / "o"), "--model", "no_such_model")
    assert res.exit_code == 2 and "no_such_model" in res.output


def test_cuda_without_cuda(tmp_path, model_dir) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    image = write_rgb(tmp_path / "x.jpg")
    res = run(str(image), "-o", str(tmp_path / "o"), "--model", model_dir, "--device", "cuda")
    assert res.exit_code == 2 and "CUDA" in res.output


def test_profile_prints_stage_table(tmp_path, model_dir) -> None:
    (tmp_path / "in").mkdir()
    write_rgb(tmp_path / "in" / "a.png")
    res = run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", model_dir, "--profile")
    assert res.exit_code == 0, res.output
    for stage in ("decode", "detect", "preprocess", "model", "postprocess", "encode"):
        assert f"| {stage} |" in res.output
    assert "1 images in" in res.output


def test_rerun_with_an_extra_output_writes_only_the_missing_one(tmp_path, model_dir) -> None:
    image = write_rgb(tmp_path / "x.jpg", (40, 32))
    out = tmp_path / "out"
    assert run(str(image), "-o", str(out), "--model", model_dir, "--whole-image").exit_code == 0
    mask_before = (out / "x.png").read_bytes()
    (out / "x.png").write_bytes(mask_before)  # same bytes, new mtime: it must not be rewritten
    stamp = (out / "x.png").stat().st_mtime_ns
    res = run(str(image), "-o", str(out), "--model", model_dir, "--whole-image", "--overlay")
    assert res.exit_code == 0, res.output
    assert Image.open(out / "x_overlay.jpg").size == (40, 32)
    assert (out / "x.png").stat().st_mtime_ns == stamp
    assert "1 written" in res.output
    res = run(str(image), "-o", str(out), "--model", model_dir, "--whole-image", "--overlay")
    assert "0 written" in res.output and "1 skipped" in res.output


def test_outputs_inside_the_input_folder_are_never_inputs(tmp_path, model_dir) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.jpg")
    out = src / "masks"
    for _ in range(2):
        res = run(str(src), "-o", str(out), "--model", model_dir, "--whole-image")
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.rglob("*")) == ["a.png"]
    assert "1 skipped" in res.output


def test_a_file_written_meanwhile_is_kept(tmp_path) -> None:
    """Two runs into one folder: the existence check is repeated when each file is written."""
    from abanet.faces.pipeline import PhotoResult
    from abanet.inference.predict import output_paths, write_outputs

    paths = output_paths(tmp_path, Path("x"), ["json"])
    paths["mask"].write_bytes(b"the other run's mask")
    image = np.zeros((8, 8, 3), np.uint8)
    ones = np.ones((8, 8), np.float32)
    result = PhotoResult(ones, ones.astype(np.uint8), [], threshold=0.5, whole_image=True)
    written = write_outputs(paths, image, result, "x.jpg")
    assert written == [paths["json"]]
    assert paths["mask"].read_bytes() == b"the other run's mask"
    assert write_outputs(paths, image, result, "x.jpg", overwrite=True) == list(paths.values())
