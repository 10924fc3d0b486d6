"""``abanet predict --engine ray``: the local engine's masks from Ray actors, resume, manifests,
error rows; manifests and the actor's error isolation without Ray."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image
from typer.testing import CliRunner

from abanet.cli.main import app
from abanet.errors import DataError, DistributedError
from abanet.inference.predict import read_manifest
from abanet.inference.ray_engine import PredictActor, RayOptions, actor_device, check_fits
from abanet.inference.segmenter import default_samples_dir
from tests.fixtures import tiny_saved_model, write_rgb

runner = CliRunner()


def predict(*args: str):
    return runner.invoke(app, ["predict", *args, "--whole-image", "--backend", "eager", "-q"])


#: a face in the shipped two-faces photo (the other samples are face crops already)
FACE_BOX = (619, 175, 812, 368)


def tiny_photos(folder: Path) -> Path:
    """The shipped samples' face crops at 64x64 (one in a sub-folder) and a corrupt JPEG."""
    (folder / "sub").mkdir(parents=True)
    for i, src in enumerate(sorted(default_samples_dir().glob("*.jpg"))):
        im = Image.open(src).convert("RGB")
        if "two_faces" in src.name:
            im = im.crop(FACE_BOX)
        im.resize((64, 64)).save(folder / ("sub" if i == 0 else "") / src.name, quality=90)
    (folder / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One local run and one ``--engine ray --workers 2`` run (2-CPU local Ray) over a folder and
    a Parquet manifest; the Ray run's output folder already holds one input's mask."""
    root = tmp_path_factory.mktemp("ray")
    photos = tiny_photos(root / "photos")
    extra = write_rgb(root / "elsewhere.png", (40, 30), seed=3)
    manifest = root / "list.parquet"
    pq.write_table(pa.table({"path": [str(extra), str(root / "missing.jpg")]}), manifest)
    out_local, out_ray = root / "local", root / "ray"
    common = [str(photos), "--manifest", str(manifest)]
    local = predict(*common, "-o", str(out_local), "--results", str(root / "local.jsonl"))
    assert local.exit_code == 1, local.output  # bad.jpg and missing.jpg fail
    out_ray.mkdir()
    first = sorted(photos.glob("sample*.jpg"))[0]
    (out_ray / f"{first.stem}.png").write_bytes(b"written by an earlier run")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        res = predict(*common, "-o", str(out_ray), "--engine", "ray", "--workers", "2")
    finally:
        ray.shutdown()
    assert res.exit_code == 1, res.output
    assert "2 failed" in res.output and "1 skipped" in res.output
    return {"local": out_local, "ray": out_ray, "first": first, "root": root}


def rows(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {Path(r["path"]).name: r for r in lines}


def test_ray_writes_the_local_engines_masks(runs) -> None:
    local = {p.relative_to(runs["local"]) for p in runs["local"].rglob("*.png")}
    ray_out = {p.relative_to(runs["ray"]) for p in runs["ray"].rglob("*.png")}
    assert local == ray_out and len(local) == 5
    assert Path("sub") in {p.parent for p in local}
    kept = Path(f"{runs['first'].stem}.png")
    assert (runs["ray"] / kept).read_bytes() == b"written by an earlier run"
    for name in local - {kept}:
        assert (runs["ray"] / name).read_bytes() == (runs["local"] / name).read_bytes()
        if name.name.startswith("sample"):  # a real mask, not an empty or full one
            assert 0.1 < (np.asarray(Image.open(runs["ray"] / name)) > 0).mean() < 0.9


def test_results_manifest_has_a_status_per_input(runs) -> None:
    ray_rows = rows(runs["ray"] / "results.jsonl")
    status = {name: r["status"] for name, r in ray_rows.items()}
    assert status.pop(runs["first"].name) == "skipped"
    assert status.pop("bad.jpg") == status.pop("missing.jpg") == "error"
    assert set(status.values()) == {"ok"} and len(status) == 4
    assert "bad.jpg: cannot read image" in ray_rows["bad.jpg"]["message"]
    assert "missing.jpg: cannot read image (file not found)" in ray_rows["missing.jpg"]["message"]
    assert ray_rows["elsewhere.png"]["mask"] == str(runs["ray"] / "elsewhere.png")
    local_rows = rows(runs["root"] / "local.jsonl")  # the local engine writes the same rows
    assert local_rows["bad.jpg"]["message"] == ray_rows["bad.jpg"]["message"]
    assert {n: r["status"] for n, r in local_rows.items()} == {
        n: "ok" if n == runs["first"].name else r["status"] for n, r in ray_rows.items()
    }


def test_manifests_text_and_parquet(tmp_path) -> None:
    text = tmp_path / "list.txt"
    text.write_text("# photos\na.jpg\n\n  s3://bucket/b.png  \n")
    assert read_manifest(text) == ["a.jpg", "s3://bucket/b.png"]
    pq.write_table(pa.table({"path": ["x.jpg", None, "y.png"]}), tmp_path / "l.parquet")
    assert read_manifest(tmp_path / "l.parquet") == ["x.jpg", "y.png"]
    pq.write_table(pa.table({"file": ["x.jpg"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="bad.parquet: a Parquet manifest needs a 'path' column"):
        read_manifest(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="nope.txt: cannot read manifest"):
        read_manifest(tmp_path / "nope.txt")


def test_an_unforeseen_failure_is_one_error_row(tmp_path, monkeypatch) -> None:
    """The actor (called here without Ray) isolates an input whose processing raises."""
    import abanet.inference.predict as predict_module

    model = str(tiny_saved_model(tmp_path / "model"))
    for name in ("a", "boom", "c"):
        write_rgb(tmp_path / f"{name}.png", seed=len(name))
    read = predict_module.read_source

    def flaky(source):
        if "boom" in str(source):
            raise RuntimeError("decoder crashed\nsecond line")
        return read(source)

    monkeypatch.setattr(predict_module, "read_source", flaky)
    monkeypatch.chdir(tmp_path)  # the actor moves to the driver's folder: restored after
    session = {"model": model, "backend": "eager", "detector": None, "num_threads": 1}
    actor = PredictActor(session, str(tmp_path / "out"), str(tmp_path), {"whole_image": True})
    paths = [str(tmp_path / f"{n}.png") for n in ("a", "boom", "c")]
    batch = {"path": np.array(paths), "stem": np.array(["a", "boom", "c"])}
    got = actor(batch)
    status = dict(zip(got["stem"], got["status"], strict=True))
    assert status == {"a": "ok", "boom": "error", "c": "ok"}
    message = got["message"][got["stem"].index("boom")]
    assert message == f"{paths[1]}: RuntimeError: decoder crashed"
    assert (tmp_path / "out" / "c.png").exists() and not (tmp_path / "out" / "boom.png").exists()


def test_engine_ray_without_ray_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    image = write_rgb(tmp_path / "x.jpg")
    res = predict(str(image), "-o", str(tmp_path / "o"), "--engine", "ray")
    assert res.exit_code == 2
    assert "--engine ray needs Ray, which is not installed here (pip install 'abanet[ray]')" in (
        res.output
    )
    assert not (tmp_path / "o").exists()


def test_ray_options_and_devices_are_checked(tmp_path) -> None:
    image = write_rgb(tmp_path / "x.jpg")
    res = predict(str(image), "-o", str(tmp_path / "o"), "--workers", "2")
    assert res.exit_code == 2 and "options of --engine ray" in res.output
    res = predict(str(image), "-o", str(tmp_path / "o"), "--engine", "ray", "--camera", "0")
    assert res.exit_code == 2 and "run videos, --camera" in res.output
    assert actor_device("auto", 0) == "cpu" and actor_device("auto", 0.5) == "cuda"
    with pytest.raises(DistributedError, match="actors with a GPU run on cuda"):
        actor_device("cpu", 1)
    with pytest.raises(DistributedError, match="need 4 CPUs; the local Ray has 2"):
        check_fits(4, RayOptions(cpus_per_worker=1), {"CPU": 2.0})
    check_fits(2, RayOptions(cpus_per_worker=1), {"CPU": 2.0})
