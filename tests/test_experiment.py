"""abanet experiment: presets load, smoke scale runs end to end, finished trials are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abanet.engine.experiments import (
    SMOKE_SUBSTITUTES,
    list_experiments,
    load_preset,
    run_config,
    run_experiment,
)
from abanet.errors import AbanetError
from abanet.models.registry import get_entry
from tests.fixtures import ellipse_dataset

PRESETS = ["figure7", "table2", "table4", "table5", "table6", "table7", "table8", "table9"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_preset_is_listed_and_builds_valid_configs(tmp_path: Path) -> None:
    assert list_experiments() == PRESETS
    for name in PRESETS:
        for scale in ("smoke", "medium", "full"):
            spec = load_preset(name, scale)
            assert spec.runs
            for run in spec.runs:
                cfg = run_config(spec, run, "DATA", scale, 0, tmp_path / "r")
                assert cfg["data"]["train"] == ["DATA"]
                if scale == "smoke":
                    assert cfg["trainer"]["max_steps"] <= 2
                    assert cfg["model"]["name"] not in SMOKE_SUBSTITUTES
                    assert cfg["model"]["encoder_weights"] is None
                elif scale == "medium":
                    # a real ranking on a CPU: lite models, ImageNet encoders that install offline
                    assert cfg["trainer"]["max_steps"] == 300 and cfg["input_size"] <= 256
                    assert cfg["model"]["name"] not in SMOKE_SUBSTITUTES
                    assert cfg["model"]["kwargs"].get("encoder_name") in (None, "mobilenet_v2")
                    # ImageNet encoders where the model has one (Table 4's U-Nets and GrabCut
                    # have none: they are trained from scratch / not trained, as in their papers)
                    pretrained = get_entry(cfg["model"]["name"]).encoder_weights is not None
                    assert cfg["model"]["encoder_weights"] == ("imagenet" if pretrained else None)
                else:
                    assert cfg["batch_size"] == 8 and cfg["optim"]["lr"] == pytest.approx(1e-4)


def test_preset_rows_vary_what_the_paper_varies(tmp_path: Path) -> None:
    def cfgs(name: str, scale: str = "full", **kw: object) -> dict[str, dict]:
        spec = load_preset(name, scale)
        return {r.label: run_config(spec, r, "D", scale, 0, tmp_path, **kw) for r in spec.runs}

    t5 = cfgs("table5")
    assert t5["baseline"]["model"]["kwargs"] == {"refine": False, "attention_stages": []}
    assert t5["ABANet"]["model"]["kwargs"] == {"refine": True, "attention_stages": [1, 2, 3]}
    assert {c["model"]["name"] for c in t5.values()} == {"abanet_r34"}
    t6 = cfgs("table6")
    assert [c["model"]["kwargs"]["attention_stages"] for c in t6.values()] == [
        [1, 2],
        [1, 2, 3],
        [1, 2, 3, 4],
    ]
    assert [c["input_size"] for c in cfgs("table7").values()] == [128, 256, 512]
    assert [c["optim"]["name"] for c in cfgs("table8").values()] == [
        "sgd",
        "adamax",
        "rmsprop",
        "adam",
    ]
    assert [c["loss"]["spec"] for c in cfgs("table9").values()] == [
        "focal",
        "iou",
        "focal+iou",
        "focal+ssim+iou",
    ]
    assert [c["loss"]["focal_alpha"] for c in cfgs("figure7").values()] == [0.3, 0.5, 0.75, 0.9]
    t2 = cfgs("table2")
    assert len(t2) == 21
    assert t2["DAD (ResNet50)"]["model"]["name"] == "dad"
    assert t2["Unet++ (VGG19)"]["model"] == {
        **t2["Unet++ (VGG19)"]["model"],
        "name": "unetplusplus",
        "kwargs": {"encoder_name": "vgg19"},
    }
    smoke2 = cfgs("table2", "smoke")
    assert len(smoke2) == 11
    assert {c["model"]["kwargs"].get("encoder_name") for c in smoke2.values()} == {"resnet18", None}
    # medium: one row per architecture (encoder rows collapse to MobileNetV2), lite stand-ins
    medium2 = cfgs("table2", "medium")
    assert len(medium2) == 11 and "Unet (VGG19)" not in medium2
    assert medium2["EU-Net (ResNet-34)"]["model"]["kwargs"] == {"encoder_name": "mobilenet_v2"}
    assert medium2["BASNet"]["model"]["kwargs"]["attention_stages"] == []
    assert [c["input_size"] for c in cfgs("table7", "medium").values()] == [64, 128, 256]
    # substitution can be turned off: the real architecture at its smallest smoke size
    real = cfgs("table5", "smoke", substitute=False)
    assert {c["model"]["name"] for c in real.values()} == {"abanet_r34"}
    assert load_preset("table4", "full").trials == 5 and load_preset("table4", "smoke").trials == 2
    # Table 4: the masked-face methods as rows (none left as paper-only numbers), then ABANet
    t4 = cfgs("table4")
    assert [c["model"]["name"] for c in t4.values()] == [
        "din_unet",
        "grabcut",
        "geng_unet",
        "maskrcnn_mbv2",
        "abanet_r34",
    ]
    assert load_preset("table4").paper_only == []
    assert t4["Geng et al. [21]"]["loss"]["spec"] == "bce"
    assert t4["Sola and Gera [63]"]["model"]["encoder_weights"] == "imagenet"
    medium4 = cfgs("table4", "medium")
    assert medium4["Geng et al. [21]"]["model"]["kwargs"] == {"base_channels": 16}
    assert medium4["Sola and Gera [63]"]["batch_size"] == 4
    assert medium4["ABANet"]["model"]["name"] == "abanet_lite"
    # extra training sets join the split dataset; seeds follow the trial number
    spec = load_preset("table9", "full")
    cfg = run_config(
        spec,
        spec.runs[0],
        "D",
        "full",
        3,
        tmp_path,
        overrides=["data.train=[{path: S, repeat: 0.5}]"],
        seed=10,
    )
    assert cfg["data"]["train"] == ["D", {"path": "S", "repeat": 0.5}]
    assert cfg["seed"] == 13


def test_unknown_preset_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(AbanetError, match="unknown experiment 'table99'.*table2"):
        load_preset("table99")
    data = ellipse_dataset(tmp_path / "d", n=4)
    with pytest.raises(AbanetError, match="unknown config key 'optim.lrr'"):
        run_experiment(
            "table6", data, tmp_path / "x", overrides=["optim.lrr=1"], log=lambda s: None
        )
    with pytest.raises(AbanetError, match="scale"):
        load_preset("table6", "huge")


def test_table6_smoke_end_to_end_and_resume(tmp_path: Path) -> None:
    data = ellipse_dataset(tmp_path / "d", n=10)
    out = tmp_path / "exp"
    logs: list[str] = []
    res = run_experiment("table6", data, out, scale="smoke", log=logs.append)
    assert res.trained == 3 and res.skipped == 0
    text = res.table.read_text()
    assert "Table 6" in text and "| 4, 5, 6 |" in text and "93.814" in text
    for label in ("5_6", "4_5_6", "3_4_5_6"):
        summary = json.loads((out / label / "trial0" / "eval" / "summary.json").read_text())
        assert summary["subset"] == "test" and summary["images"] == 1
        assert (out / label / "trial0" / "train" / "model" / "model.safetensors").is_file()
        assert not (out / label / "trial0" / "train" / "checkpoints").exists()  # exported: gone
    results = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in results["rows"]] == ["5, 6", "4, 5, 6", "3, 4, 5, 6"]
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("label,trials,") and len(csv_lines) == 4
    # everything is done: a second call trains nothing and rebuilds the same table
    again = run_experiment("table6", data, out, scale="smoke", log=logs.append)
    assert again.trained == 0 and again.skipped == 3
    assert again.table.read_text() == text


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PRESETS if p != "table6"])
def test_every_preset_runs_at_smoke_scale(tmp_path: Path, name: str) -> None:
    data = ellipse_dataset(tmp_path / "d", n=10)
    res = run_experiment(name, data, tmp_path / "exp", scale="smoke", log=lambda s: None)
    spec = load_preset(name, "smoke")
    assert res.trained == len(spec.runs) * spec.trials
    text = res.table.read_text()
    for run in spec.runs:
        assert f"| {run.label} |" in text
    if name == "table4":
        assert " +- " in text.split("Paper:")[0]  # two trials: mean +- std
        assert "FPS" in text
        trained = [r["trained"].split(",")[0] for r in res.rows]
        assert trained == ["din_unet", "grabcut", "geng_unet", "maskrcnn_mbv2", "abanet_lite"]
        grabcut = json.loads(
            (tmp_path / "exp" / "Zhang_et_al._23" / "trial1" / "train" / "result.json").read_text()
        )
        assert grabcut["global_step"] == 0 and grabcut["exported"] == "untrained"
        assert all(r["trials"] == 2 and r["scores"]["fps"][0] > 0 for r in res.rows)


def _one_run_preset(path: Path, label: str, model: str) -> Path:
    path.write_text(
        "title: one run\nrow_header: Model\ncolumns: [iou]\n"
        f"runs:\n  - label: {label}\n    set: {{model.name: {model}}}\n"
    )
    return path


@pytest.mark.slow
def test_real_abanet_r34_at_smoke_size(tmp_path: Path) -> None:
    """The paper's architecture itself (no substitution) through a one-run preset file."""
    data = ellipse_dataset(tmp_path / "d", n=6)
    preset = _one_run_preset(tmp_path / "one.yaml", "ABANet", "abanet_r34")
    res = run_experiment(
        str(preset), data, tmp_path / "exp", scale="smoke", substitute=False, log=lambda s: None
    )
    cfg = json.loads(
        (tmp_path / "exp" / "ABANet" / "trial0" / "train" / "model" / "config.json").read_text()
    )
    assert cfg["name"] == "abanet_r34" and cfg["input_size"] == 64
    assert res.trained == 1


def test_keep_checkpoints_keeps_the_trial_checkpoints(tmp_path: Path) -> None:
    data = ellipse_dataset(tmp_path / "d", n=6)
    preset = _one_run_preset(tmp_path / "one.yaml", "lite", "abanet_lite")
    out = tmp_path / "exp"
    run_experiment(str(preset), data, out, scale="smoke", keep_checkpoints=True, log=print)
    ckpts = out / "lite" / "trial0" / "train" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]


def _two_row_preset(path: Path, second_encoder: str) -> Path:
    path.write_text(
        "title: two rows\nrow_header: Model\ncolumns: [iou, f1]\n"
        "runs:\n"
        "  - label: good\n    set: {model.name: unet, model.kwargs.encoder_name: resnet18}\n"
        f"  - label: bad | row\n    set: {{model.name: unet, model.kwargs.encoder_name: "
        f"{second_encoder}}}\n"
        "  - label: last\n    set: {model.name: unet, model.kwargs.encoder_name: resnet18}\n"
    )
    return path


def test_a_failing_row_is_recorded_the_others_run_and_a_rerun_retries_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abanet.cli.main import app

    data = ellipse_dataset(tmp_path / "d", n=6)
    out = tmp_path / "exp"
    preset = _two_row_preset(tmp_path / "two.yaml", "resnet_nope")
    logs: list[str] = []
    res = run_experiment(str(preset), data, out, scale="smoke", log=logs.append)
    # the rows before and after the failing one trained and were scored
    assert res.trained == 2 and res.failed == ["bad | row"]
    assert any("bad | row trial 0: failed: unet:" in line for line in logs)
    table = res.table.read_text()
    bad = next(line for line in table.splitlines() if line.startswith("| bad \\| row |"))
    cells = [c.strip() for c in bad.split(" | ")]
    assert cells[1].startswith('failed: unet: "Wrong encoder name `resnet_nope`')
    assert cells[1].endswith("...") and cells[2] == "-"  # long messages are cut; no scores
    assert "| good | " in table and "| last | " in table and "failed" not in table.split("bad")[0]
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == 1
    rows = {r["label"]: r for r in results["rows"]}
    assert rows["bad | row"]["trials"] == 0
    assert rows["bad | row"]["failed"][0]["trial"] == 0
    assert "Wrong encoder name `resnet_nope`" in rows["bad | row"]["failed"][0]["error"]
    assert rows["good"]["failed"] == [] and rows["last"]["trials"] == 1
    error_log = out / "bad_row" / "trial0" / "error.log"
    assert "Traceback" in error_log.read_text() and "resnet_nope" in error_log.read_text()
    csv_rows = (out / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("label,trials,") and csv_rows[0].endswith(",failed")
    assert len(csv_rows) == 4 and "trial 0: unet:" in csv_rows[2]
    # the command says how many rows failed and exits with 1 (some inputs failed)
    cli = CliRunner().invoke(
        app, ["experiment", str(preset), "--data", str(data), "--out", str(out)]
    )
    assert cli.exit_code == 1
    assert "1 of 3 rows failed (bad | row)" in cli.output
    # fixed, the row is retried on the next run; the finished rows are not trained again
    _two_row_preset(preset, "resnet18")
    again = run_experiment(str(preset), data, out, scale="smoke", log=logs.append)
    assert again.trained == 1 and again.skipped == 2 and again.failed == []
    assert "failed" not in again.table.read_text() and not error_log.exists()
    assert json.loads((out / "results.json").read_text())["failed"] == 0
