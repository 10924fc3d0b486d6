"""Training at scale: DDP with two CPU processes (gloo) end to end, data sharding, mixed precision,
the paper-scale config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from abanet.engine.config import ConfigError, resolve_config
from tests.fixtures import ellipse_dataset
from tests.test_engine import tiny_config

REPO = Path(__file__).resolve().parents[1]


def _shard_scores(model: torch.nn.Module, dataset: object, world: int, batch: int) -> list[dict]:
    """Per-image validation scores computed in this process, in the batches each of ``world``
    processes ran (every ``world``-th image from its rank), so that the arithmetic is the same."""
    from abanet.metrics import SegmentationMetrics

    rows = []
    for rank in range(world):
        idx = list(range(rank, len(dataset), world))
        for start in range(0, len(idx), batch):
            items = [dataset[i] for i in idx[start : start + batch]]
            x = torch.stack([it["image"] for it in items]).contiguous(
                memory_format=torch.channels_last
            )
            with torch.no_grad():
                probs = torch.sigmoid(model(x).float())
            m = SegmentationMetrics(structure=False)
            m.update(probs, torch.stack([it["mask"] for it in items]), [it["name"] for it in items])
            rows += [{**r, "rank": rank} for r in m.per_image()]
    return rows


@pytest.mark.slow  # two processes each import torch and Lightning
def test_ddp_two_cpu_processes_report_the_global_validation_scores(tmp_path: Path) -> None:
    import abanet
    from abanet.data.dataset import SegmentationDataset
    from abanet.data.preprocess import resolve_data_config
    from abanet.data.readers import open_dataset, paired
    from abanet.engine.module import VAL_KEYS

    data = ellipse_dataset(tmp_path / "train", n=8)
    val = ellipse_dataset(tmp_path / "val", n=5, seed=3, vary=True)  # shares of 3 and 2 images
    run = tmp_path / "run"
    args = [
        f"data.train=[{data}]",
        f"data.val={val}",
        "model.name=abanet_lite",
        "model.encoder_weights=null",
        "input_size=64",
        "batch_size=2",
        "num_workers=0",
        "optim.lr=0.01",
        "trainer.max_epochs=null",
        "trainer.max_steps=3",
        "trainer.val_every_n_steps=2",
        "trainer.sanity_val_steps=1",
        "trainer.progress_bar=false",
        "trainer.log_every=1",
        "trainer.cpu_threads=1",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"out={run}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "abanet", "train", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    # one summary on the console, one set of outputs
    assert proc.stdout.count("best val IoU:") == 1, proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert [p.name for p in (run / "tb").iterdir()] == ["version_0"]
    assert not list(run.rglob(".*.tmp"))
    result = json.loads((run / "result.json").read_text())
    assert result["global_step"] == 3 and result["exported"] == "best"
    reported = result["val_scores"]

    # the same weights, scored in this one process on the whole validation set
    model = abanet.load_model(run / "model").to(memory_format=torch.channels_last)
    samples = paired(open_dataset(str(val), "auto")[0])
    dc = resolve_data_config(model.config, 64)
    dataset = SegmentationDataset(samples, size=dc.size, mean=dc.mean, std=dc.std)
    rows = _shard_scores(model, dataset, world=2, batch=2)
    assert sorted(r["name"] for r in rows) == sorted(s.name for s in samples)  # each image once
    assert reported["images"] == 5
    for k in VAL_KEYS:
        assert reported[k] == pytest.approx(np.mean([r[k] for r in rows]), abs=1e-9), k
    assert result["best_score"] == pytest.approx(reported["iou"], abs=1e-6)
    # the check can tell: one process's mean, and the mean of the two processes' means, differ
    ious = [np.mean([r["iou"] for r in rows if r["rank"] == rank]) for rank in (0, 1)]
    assert abs(reported["iou"] - ious[0]) > 1e-3
    assert abs(reported["iou"] - np.mean(ious)) > 1e-4
    metadata = json.loads((run / "model" / "config.json").read_text())["metadata"]
    assert metadata["val_scores"]["iou"] == pytest.approx(reported["iou"], abs=1e-9)


def test_repeat_sampler_shards_are_disjoint_and_even() -> None:
    from abanet.engine.data import RepeatSampler

    whole = list(RepeatSampler([5, 2], [1.0, 1.5], seed=1))
    shards = [
        list(RepeatSampler([5, 2], [1.0, 1.5], seed=1, num_replicas=3, rank=r)) for r in range(3)
    ]
    assert [len(s) for s in shards] == [3, 3, 3]  # 8 indices padded to 9
    merged = [shards[r][i] for i in range(3) for r in range(3)]
    assert merged == whole + whole[:1]  # interleaved, padded by wrapping around
    s = RepeatSampler([5, 2], [1.0, 1.5], seed=1, num_replicas=3, rank=1)
    s.set_epoch(1)
    assert list(s) != shards[1]
    with pytest.raises(ValueError, match="rank 3"):
        RepeatSampler([4], [1.0], num_replicas=3, rank=3)


def _datamodule(tmp_path: Path, val_images: int) -> object:
    from abanet.data.preprocess import DataConfig
    from abanet.engine.data import SegmentationDataModule, plan_data

    data = ellipse_dataset(tmp_path / "d", n=6)
    val = ellipse_dataset(tmp_path / "v", n=val_images, seed=1)
    cfg = tiny_config(data, tmp_path / "run")
    cfg["data"]["val"] = str(val)
    plan = plan_data(resolve_config(cfg))
    return SegmentationDataModule(
        plan, DataConfig(64), batch_size=2, num_workers=0, augment="light"
    )


def test_each_process_validates_its_own_images_once(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path, val_images=5)
    names, augmented = [], []
    for rank in (0, 1):
        dm.train_set = dm.val_set = None
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        dm.setup("fit")
        names.append([n for b in dm.val_dataloader() for n in b["name"]])
        augmented.append(dm.train_set.datasets[0][0]["image"])
    assert [len(n) for n in names] == [3, 2]
    assert sorted(names[0] + names[1]) == [f"img{i:02d}.png" for i in range(5)]
    # the processes draw different augmentations of the same image
    assert not torch.equal(augmented[0], augmented[1])


def test_too_few_validation_images_for_the_processes(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path, val_images=1)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(ConfigError, match="1 image.* for 2 processes"):
        dm.setup("fit")


def test_bf16_mixed_trains_on_cpu_and_16_mixed_is_refused(tmp_path: Path, one_thread) -> None:
    from abanet.engine.training import train

    data = ellipse_dataset(tmp_path / "d")
    cfg = tiny_config(data, tmp_path / "bf16")
    cfg["trainer"].update(precision="bf16-mixed", accelerator="cpu")
    res = train(cfg)
    assert res.global_step == 2 and 0.0 <= res.val_scores["iou"] <= 1.0
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # fp32 master weights
    cfg = tiny_config(data, tmp_path / "fp16")
    cfg["trainer"].update(precision="16-mixed", accelerator="cpu")
    with pytest.raises(ConfigError, match="'trainer.precision': 16-mixed needs a GPU"):
        train(cfg)
    assert not (tmp_path / "fp16").exists()


def test_spawning_strategies_and_unnamed_multi_process_runs_are_refused(tmp_path: Path) -> None:
    from abanet.engine.training import train

    with pytest.raises(ConfigError, match="'trainer.strategy': 'ddp_spawn'.*use ddp"):
        resolve_config(None, ["trainer.strategy=ddp_spawn"])
    data = ellipse_dataset(tmp_path / "d")
    cfg = tiny_config(data, tmp_path / "run")
    cfg["out"] = None
    cfg["trainer"].update(accelerator="cpu", devices=2, strategy="ddp")
    with pytest.raises(ConfigError, match="'out': 2 processes must share one run folder"):
        train(cfg)


def test_paper_r34_config_is_the_papers_recipe() -> None:
    cfg = resolve_config(REPO / "configs" / "paper_r34.yaml")
    assert cfg["model"]["name"] == "abanet_r34" and cfg["model"]["encoder_weights"] == "imagenet"
    assert (cfg["input_size"], cfg["batch_size"]) == (256, 8)
    assert cfg["loss"]["spec"] == "focal+ssim+iou" and cfg["loss"]["focal_alpha"] == 0.3
    assert (cfg["optim"]["name"], cfg["optim"]["lr"]) == ("adam", 1e-4)
    t = cfg["trainer"]
    assert t["strategy"] == "ddp" and t["precision"] == "16-mixed" and t["accelerator"] == "gpu"
