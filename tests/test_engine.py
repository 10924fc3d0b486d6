"""Training engine: config handling, data plan, sampler, schedules, end-to-end train and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from abanet.data.preprocess import DataConfig
from abanet.engine.config import (
    ConfigError,
    default_config,
    parse_overrides,
    parse_value,
    resolve_config,
)
from tests.fixtures import ellipse_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(data: Path, out: Path, **extra: object) -> dict:
    cfg = {
        "data": {"train": [str(data)], "augment": "light"},
        "model": {"name": "abanet_lite", "encoder_weights": None},
        "input_size": 64,
        "batch_size": 4,
        "num_workers": 0,
        "trainer": {
            "max_steps": 2,
            "max_epochs": None,
            "sanity_val_steps": 0,
            "progress_bar": False,
            "log_every": 1,
        },
        "out": str(out),
    }
    for k, v in extra.items():
        cfg[k] = v
    return cfg


# ------------------------------------------------------------------------------------ config
def test_default_config_is_valid_and_documents_sections() -> None:
    cfg = resolve_config()
    for key in ("data", "model", "loss", "optim", "sched", "trainer", "early_stopping"):
        assert key in cfg
    assert cfg["optim"]["lr"] == pytest.approx(1e-4)
    assert cfg["loss"]["focal_alpha"] == pytest.approx(0.3)
    assert cfg["batch_size"] == 8 and cfg["input_size"] == 256


def test_parse_value_and_overrides() -> None:
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("null") is None
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("abanet_lite") == "abanet_lite"
    assert parse_value("false") is False
    ov = parse_overrides(["model.name=abanet_lite", "optim.lr=1e-3", "model.kwargs.refine=false"])
    assert ov == {
        "model": {"name": "abanet_lite", "kwargs": {"refine": False}},
        "optim": {"lr": 1e-3},
    }
    cfg = resolve_config(
        None,
        [
            "model.name=abanet_lite",
            "optim.lr=1e-3",
            "trainer.max_epochs=3",
            "model.kwargs.refine=false",
        ],
    )
    assert cfg["model"]["name"] == "abanet_lite"
    assert cfg["optim"]["lr"] == pytest.approx(1e-3)
    assert cfg["trainer"]["max_epochs"] == 3
    assert cfg["model"]["kwargs"] == {"refine": False}


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*optim\.lr"):
        resolve_config(None, ["optim.lrr=0.1"])
    run = tmp_path / "run.yaml"
    run.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown config key 'trainer\.max_epoch'"):
        resolve_config(run)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["optim.lr"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("optim.name=adagrad", r"'optim\.name'.*adam, adamw, adamax, rmsprop, sgd"),
        ("optim.lr=-1", r"'optim\.lr'.*> 0"),
        ("batch_size=0", r"'batch_size'"),
        ("trainer.precision=8", r"'trainer\.precision'"),
        ("sched.name=linear", r"'sched\.name'"),
        ("data.ratios=[0.5]", r"'data\.ratios'"),
        ("data.augment=extreme", r"'data\.augment'"),
        ("optim=3", r"'optim' is a section"),
    ],
)
def test_bad_values_name_the_key(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        resolve_config(None, [override])


def test_no_stop_condition_and_conflicts() -> None:
    with pytest.raises(ConfigError, match="max_epochs"):
        resolve_config({"trainer": {"max_epochs": None}})
    with pytest.raises(ConfigError, match="plateau"):
        resolve_config(None, ["sched.name=plateau", "sched.warmup_steps=10"])
    with pytest.raises(ConfigError, match="data.fold"):
        resolve_config(None, ["data.fold=5", "data.folds=5"])


def test_config_file_must_exist_and_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_config(bad)


def test_train_entries_accept_paths_and_mappings() -> None:
    from abanet.engine.config import train_entries

    cfg = default_config()
    cfg["data"]["train"] = ["a", {"path": "b", "repeat": 2.5}]
    assert train_entries(cfg) == [
        {"path": "a", "repeat": 1.0, "kind": "auto", "negatives": False},
        {"path": "b", "repeat": 2.5, "kind": "auto", "negatives": False},
    ]
    cfg["data"]["train"] = [{"path": "b", "negatives": "yes"}]
    with pytest.raises(ConfigError, match=r"data\.train\[0\]\.negatives': expected true or false"):
        train_entries(cfg)
    cfg["data"]["train"] = [{"path": "b", "weight": 2}]
    with pytest.raises(ConfigError, match=r"data\.train\[0\]\.weight"):
        train_entries(cfg)
    cfg["data"]["train"] = [{"path": "b", "repeat": 0}]
    with pytest.raises(ConfigError, match="repeat"):
        train_entries(cfg)


# ------------------------------------------------------------------------------- data plan
def test_repeat_sampler_counts_and_determinism() -> None:
    from abanet.engine.data import RepeatSampler

    s = RepeatSampler([4, 2], [1.0, 2.5], seed=3)
    assert len(s) == 4 + 5
    idx = list(s)
    counts = np.bincount(idx, minlength=6)
    assert counts[:4].tolist() == [1, 1, 1, 1]  # source 0 once each
    assert counts[4:].sum() == 5 and set(counts[4:].tolist()) <= {2, 3}
    assert list(s) == idx  # same epoch, same order
    s.set_epoch(1)
    other = list(s)
    assert other != idx  # a new order each epoch ...
    assert np.bincount(other, minlength=6)[:4].tolist() == [1, 1, 1, 1]  # ... same coverage
    half = RepeatSampler([10], [0.5], seed=0)
    assert len(half) == 5 and len(set(half)) == 5


def test_plan_data_ratio_split_val_dir_and_fold(tmp_path: Path) -> None:
    from abanet.engine.data import plan_data

    data = ellipse_dataset(tmp_path / "d", n=10)
    other = ellipse_dataset(tmp_path / "o", n=4, seed=1)
    cfg = resolve_config(
        {
            "data": {
                "train": [str(data), {"path": str(other), "repeat": 3}],
                "ratios": [0.6, 0.2, 0.2],
            }
        }
    )
    plan = plan_data(cfg)
    assert [len(s.samples) for s in plan.sources] == [6, 4]
    assert plan.sources[1].repeat == 3.0
    assert len(plan.val) == 2 and len(plan.test) == 2
    names = (
        {s.name for s in plan.sources[0].samples}
        | {s.name for s in plan.val}
        | {s.name for s in plan.test}
    )
    assert len(names) == 10

    cfg = resolve_config({"data": {"train": [str(data)], "val": str(other)}})
    plan = plan_data(cfg)
    assert len(plan.sources[0].samples) == 10 and len(plan.val) == 4 and plan.split is None

    cfg = resolve_config({"data": {"train": [str(data)], "fold": 1, "folds": 5}})
    plan = plan_data(cfg)
    assert len(plan.val) == 2 and len(plan.sources[0].samples) == 8

    split = tmp_path / "split.json"
    split.write_text(
        json.dumps(
            {"train": ["img00.png", "img01.png"], "val": ["img02.png"], "test": ["img03.png"]}
        )
    )
    plan = plan_data(resolve_config({"data": {"train": [str(data)], "split": str(split)}}))
    assert [s.name for s in plan.sources[0].samples] == ["img00.png", "img01.png"]
    assert [s.name for s in plan.test] == ["img03.png"]


def test_negatives_train_with_empty_masks(tmp_path: Path) -> None:
    """Bare faces (images only, or pairs whose masks are ignored) train with empty masks."""
    from abanet.engine.data import SegmentationDataModule, plan_data

    data = ellipse_dataset(tmp_path / "d", n=6)
    bare = ellipse_dataset(tmp_path / "bare", n=3, seed=2)
    for m in (bare / "masks").iterdir():
        m.unlink()  # images without masks: as faces-unmasked
    cfg = resolve_config(
        {
            "data": {
                "train": [str(data), {"path": str(bare), "negatives": True, "repeat": 2}],
                "ratios": [0.67, 0.33],
            }
        }
    )
    plan = plan_data(cfg)
    assert [len(s.samples) for s in plan.sources] == [4, 3] and plan.sources[1].negatives
    assert plan.describe()["train"][1]["negatives"] is True
    dm = SegmentationDataModule(plan, DataConfig(64, (0, 0, 0), (1, 1, 1)), num_workers=0)
    dm.setup()
    pos, neg = dm.train_set.datasets
    assert all(pos[i]["mask"].sum() > 0 for i in range(len(pos)))
    assert all(neg[i]["mask"].sum() == 0 for i in range(len(neg)))
    assert neg[0]["image"].shape == (3, 64, 64)
    # the split applies to the first dataset, which therefore needs masks
    cfg["data"]["train"] = [{"path": str(bare), "negatives": True}, str(data)]
    with pytest.raises(ConfigError, match="must have masks"):
        plan_data(cfg)


def test_plan_data_errors(tmp_path: Path) -> None:
    from abanet.engine.data import plan_data
    from abanet.errors import AbanetError

    with pytest.raises(ConfigError, match="no training dataset"):
        plan_data(resolve_config())
    with pytest.raises(AbanetError, match="folder not found"):
        plan_data(resolve_config({"data": {"train": [str(tmp_path / "missing")]}}))


# ------------------------------------------------------------------------------ schedules
def test_lr_factor_warmup_cosine_step() -> None:
    from abanet.engine.module import lr_factor

    sched = dict(default_config()["sched"])
    sched.update(name="cosine", warmup_steps=10, min_lr_ratio=0.0)
    assert lr_factor(0, sched, 110, 10) == pytest.approx(0.1)
    assert lr_factor(9, sched, 110, 10) == pytest.approx(1.0)
    assert lr_factor(10, sched, 110, 10) == pytest.approx(1.0)
    assert lr_factor(60, sched, 110, 10) == pytest.approx(0.5)
    assert lr_factor(110, sched, 110, 10) == pytest.approx(0.0, abs=1e-12)
    sched.update(name="step", warmup_steps=0, step_epochs=2, gamma=0.1)
    assert lr_factor(19, sched, 100, 10) == pytest.approx(1.0)
    assert lr_factor(20, sched, 100, 10) == pytest.approx(0.1)
    assert lr_factor(45, sched, 100, 10) == pytest.approx(0.01)


@pytest.mark.parametrize("name", ["adam", "adamw", "adamax", "rmsprop", "sgd"])
def test_build_optimizer(name: str) -> None:
    from abanet.engine.module import build_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(p, {"name": name, "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_bad_input_size_for_model(tmp_path: Path) -> None:
    from abanet.engine.training import train

    data = ellipse_dataset(tmp_path / "d", n=6)
    cfg = tiny_config(data, tmp_path / "run", input_size=96)
    with pytest.raises(ConfigError, match=r"96 is not a multiple of 64 .*nearest valid size is"):
        train(cfg)


# ----------------------------------------------------------------------------- end to end
def test_train_end_to_end_outputs_and_export(tmp_path: Path) -> None:
    import abanet
    from abanet.engine.training import train

    data = ellipse_dataset(tmp_path / "d")
    run = tmp_path / "run"
    res = train(tiny_config(data, run), command="abanet train test")
    assert res.global_step == 2
    for rel in (
        "config.yaml",
        "split.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "model/model.safetensors",
        "model/config.json",
        "result.json",
    ):
        assert (run / rel).is_file(), rel
    assert list(run.glob("csv/version_*/metrics.csv"))
    assert list(run.glob("tb/version_*/events.out.tfevents.*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "abanet_lite" and saved["out"] == str(run)
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 12
    assert not set(split["train"]) & set(split["test"])

    assert res.best_score is not None and 0.0 <= res.best_score <= 1.0
    assert res.val_scores["iou"] == pytest.approx(res.best_score, abs=1e-6)
    model = abanet.load_model(run / "model")
    assert model.config.input_size == 64
    meta = model.config.metadata
    assert meta["command"] == "abanet train test"
    assert meta["val_scores"]["iou"] == pytest.approx(res.best_score, abs=1e-6)
    assert meta["training"]["data"]["train"][0]["pairs"] == len(split["train"])
    # the exported weights are the in-memory best model's
    x = torch.randn(2, 3, 64, 64)
    p = model.predict(x)
    assert p.shape == (2, 1, 64, 64) and float(p.min()) >= 0 and float(p.max()) <= 1
    assert torch.allclose(p, res.model.predict(x), atol=1e-5)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    # a second run into the same folder is refused
    from abanet.errors import AbanetError

    with pytest.raises(AbanetError, match="already holds a run.*--resume"):
        train(tiny_config(data, run))


def test_export_last_writes_the_final_weights(tmp_path: Path) -> None:
    import abanet
    from abanet.engine.training import train

    data = ellipse_dataset(tmp_path / "d")
    run = tmp_path / "run"
    cfg = tiny_config(data, run)
    cfg["trainer"].update(max_steps=3, val_every_n_steps=1, export="last")
    res = train(cfg)
    assert res.exported == "last"
    assert json.loads((run / "result.json").read_text())["exported"] == "last"
    model = abanet.load_model(run / "model")
    assert model.config.metadata["training"]["exported"] == "last"
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3
    weights = {k.split(".", 1)[1]: v for k, v in last["state_dict"].items()}
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    with pytest.raises(ConfigError, match="trainer.export"):
        resolve_config(None, ["trainer.export=final"])


def test_resume_continues_from_last_checkpoint(tmp_path: Path) -> None:
    from abanet.engine.training import train
    from abanet.errors import AbanetError

    data = ellipse_dataset(tmp_path / "d")
    run = tmp_path / "run"
    with pytest.raises(AbanetError, match="nothing to resume"):
        train(tiny_config(data, run), resume=True)
    first = train(tiny_config(data, run))
    assert first.global_step == 2
    # "killed" after 2 steps: resume with a larger budget, overrides on top of run/config.yaml
    second = train(None, [f"out={run}", "trainer.max_steps=4"], resume=True)
    assert second.global_step == 4
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    rows = (sorted(run.glob("csv/version_*/metrics.csv"))[-1]).read_text().splitlines()
    header = rows[0].split(",")
    steps = [int(r.split(",")[header.index("step")]) for r in rows[1:]]
    assert min(steps) >= 2 and max(steps) >= 3  # logging continued after step 2
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert not list((run / "checkpoints").glob("best-v*.ckpt"))
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 4


def test_cli_train_print_config_and_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abanet.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["train", "--print-config", "model.name=abanet_lite", "optim.lr=1e-3"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(r.output)
    assert cfg["model"]["name"] == "abanet_lite" and math.isclose(cfg["optim"]["lr"], 1e-3)
    r = runner.invoke(app, ["train", "optim.lrr=1"])
    assert r.exit_code == 2
    assert "unknown config key 'optim.lrr'" in r.output
    r = runner.invoke(app, ["train", "--resume"])
    assert r.exit_code == 2 and "--out" in r.output


def test_validate_leaves_its_input_unchanged() -> None:
    import copy

    from abanet.engine.config import validate

    cfg = default_config()
    cfg["trainer"]["precision"] = 32  # as YAML reads it
    before = copy.deepcopy(cfg)
    checked = validate(cfg)
    assert cfg == before and cfg["trainer"]["precision"] == 32
    assert checked["trainer"]["precision"] == "32"
    checked["data"]["ratios"].append(0.5)
    assert cfg["data"]["ratios"] == before["data"]["ratios"]  # a copy, not a view
    bad = copy.deepcopy(before)
    bad["batch_size"] = 0
    with pytest.raises(ConfigError, match="batch_size"):
        validate(bad)
