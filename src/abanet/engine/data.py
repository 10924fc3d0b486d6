"""Training data: the datasets named by a config, the train/val(/test) split, oversampling and the
Lightning data module."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Sampler

from abanet.data import splits as S
from abanet.data.preprocess import DataConfig
from abanet.data.readers import Sample, open_dataset, paired
from abanet.engine.config import train_entries
from abanet.errors import ConfigError, DataError


@dataclass
class Source:
    """One training dataset: its samples (after the split) and how often each is drawn per epoch."""

    path: str
    samples: list[Sample]
    repeat: float = 1.0
    negatives: bool = False  # images without masks, trained on with empty masks


@dataclass
class DataPlan:
    """What a run trains and validates on, with the split that was applied."""

    sources: list[Source]
    val: list[Sample]
    split: dict[str, list[str]] | None = None  # names of the held-out dataset, when split
    split_source: str | None = None
    test: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """Facts for the run's metadata."""
        return {
            "train": [
                {
                    "path": s.path,
                    "pairs": len(s.samples),
                    "repeat": s.repeat,
                    **({"negatives": True} if s.negatives else {}),
                }
                for s in self.sources
            ],
            "val_pairs": len(self.val),
            "test_pairs": len(self.test),
            "split_source": self.split_source,
        }


def _read_pairs(path: str, kind: str, negatives: bool = False) -> list[Sample]:
    samples, problems = open_dataset(path, kind)
    if negatives:  # every image, mask or not: the mask is empty by definition
        if not samples:
            raise DataError(f"{path}: no images found")
        return [replace(s, mask_path=None) for s in samples]
    pairs = paired(samples)
    if not pairs:
        errors = [str(p) for p in problems if p.severity == "error"][:1]
        why = f" ({errors[0]})" if errors else ""
        raise DataError(f"{path}: no image/mask pairs found{why}")
    return pairs


def _grouped(items: list[Sample], group_by: Any) -> list[Sample]:
    """Samples with their ``group`` set by ``group_by`` and byte-identical images merged."""
    from abanet.data.dedup import duplicate_sets

    groups = S.sample_groups(items, group_by)
    dups = [[s.name for s in d] for d in duplicate_sets(items)]
    if dups:
        groups = S.merge_groups(groups, dups)
    return [replace(s, group=groups[s.name]) for s in items]


def plan_data(cfg: Mapping[str, Any]) -> DataPlan:
    """Read the datasets of ``cfg['data']`` and decide train / val (/ test)."""
    d = cfg["data"]
    entries = train_entries(cfg)
    if not entries:
        raise ConfigError("config key 'data.train': no training dataset given (a list of folders)")
    pairs = [_read_pairs(e["path"], e["kind"], e["negatives"]) for e in entries]
    sources = [
        Source(e["path"], p, e["repeat"], e["negatives"])
        for e, p in zip(entries, pairs, strict=True)
    ]
    if sources[0].negatives and not d["val"]:
        raise ConfigError(
            "config key 'data.train[0]': the split applies to the first dataset, which must "
            "have masks (put the negatives after it)"
        )
    notes: list[str] = []
    if d["val"]:
        val = _read_pairs(str(d["val"]), str(d["kind"]))
        return DataPlan(sources, val, notes=notes)

    first = sources[0]
    items = first.samples
    if d["split"]:
        split = S.load_split(d["split"])
        if "train" not in split or "val" not in split:
            raise DataError(f"{d['split']}: a split file needs 'train' and 'val' lists")
        source = str(d["split"])
    elif d["fold"] is not None:
        folds = S.kfold_splits(
            _grouped(items, d["group_by"]), k=int(d["folds"]), seed=int(cfg["seed"])
        )
        split = folds[int(d["fold"])]
        source = f"fold {d['fold']} of {d['folds']} (seed {cfg['seed']})"
    else:
        ratios = [float(r) for r in d["ratios"]]
        split = S.split_by_ratios(_grouped(items, d["group_by"]), ratios, seed=int(cfg["seed"]))
        source = f"ratios {ratios} (seed {cfg['seed']}, group_by {d['group_by']})"
    parts = S.apply_split(items, split)
    if not parts.get("train"):
        raise DataError(f"{first.path}: the split leaves no training samples")
    if not parts.get("val"):
        raise DataError(f"{first.path}: the split leaves no validation samples")
    sources[0] = replace(first, samples=parts["train"])
    named = {k: [s.name for s in v] for k, v in parts.items()}
    return DataPlan(sources, parts["val"], named, source, parts.get("test", []), notes)


class RepeatSampler(Sampler[int]):
    """Indices into a ``ConcatDataset`` of sources where source ``i`` is drawn ``repeat[i]`` times
    per epoch: ``floor(repeat)`` full passes plus a random subset for the fraction; shuffled.
    Deterministic for (seed, epoch); Lightning calls :meth:`set_epoch`.

    Distributed training: every process builds the same epoch and takes every
    ``num_replicas``-th index from ``rank`` on (the epoch padded by wrapping around, like torch's
    ``DistributedSampler``), so the processes see disjoint parts and the same number of batches.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        repeats: Sequence[float],
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.sizes = [int(n) for n in sizes]
        self.repeats = [float(r) for r in repeats]
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.total = sum(
            max(1, round(n * r)) for n, r in zip(self.sizes, self.repeats, strict=True)
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.total / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        out: list[torch.Tensor] = []
        offset = 0
        for n, r in zip(self.sizes, self.repeats, strict=True):
            count = max(1, round(n * r))
            full, rest = divmod(count, n)
            for _ in range(full):
                out.append(torch.randperm(n, generator=g) + offset)
            if rest:
                out.append(torch.randperm(n, generator=g)[:rest] + offset)
            offset += n
        idx = torch.cat(out)
        if self.shuffle:
            idx = idx[torch.randperm(len(idx), generator=g)]
        if self.num_replicas > 1:
            padded = len(self) * self.num_replicas
            idx = idx.repeat(math.ceil(padded / len(idx)))[:padded]
            idx = idx[self.rank :: self.num_replicas]
        return iter(idx.tolist())


class SegmentationDataModule(L.LightningDataModule):
    """Train and validation loaders for a :class:`DataPlan` (augmented train, plain val).

    Distributed training (Lightning's ``use_distributed_sampler=False``: the module shards
    itself): each process trains on its share of every epoch (:class:`RepeatSampler`) with its
    own augmentation stream, and validates on its share of the validation images, each image
    exactly once over all processes (Lightning's ``DistributedSampler`` would repeat images to
    even out the shares, and the repeats would count twice in the metrics).
    """

    def __init__(
        self,
        plan: DataPlan,
        data_config: DataConfig,
        batch_size: int = 8,
        num_workers: int = 2,
        augment: str = "default",
        cache: bool = True,
        seed: int = 0,
        val_max: int | None = None,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.data_config = data_config
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.augment = augment
        self.cache = cache
        self.seed = int(seed)
        self.val_max = val_max
        self.train_set: ConcatDataset | None = None
        self.val_set: Any = None

    def _replicas(self) -> tuple[int, int]:
        """``(world_size, global_rank)`` of the attached trainer (1, 0 without one)."""
        if self.trainer is None:
            return 1, 0
        return int(self.trainer.world_size), int(self.trainer.global_rank)

    def setup(self, stage: str | None = None) -> None:
        from abanet.data.dataset import SegmentationDataset

        world, rank = self._replicas()
        if self.train_set is None:
            parts = []
            for i, src in enumerate(self.plan.sources):
                ds = SegmentationDataset(
                    src.samples,
                    size=self.data_config.size,
                    mean=self.data_config.mean,
                    std=self.data_config.std,
                    augment=True,
                    strength=self.augment,
                    cache=self.cache,
                    seed=self.seed + i,
                    empty_masks=src.negatives,
                    stream=rank,
                )
                if self.cache:
                    ds.preload()
                parts.append(ds)
            self.train_set = ConcatDataset(parts)
        if self.val_set is None:
            val = self.plan.val[: self.val_max] if self.val_max else self.plan.val
            if len(val) < world:
                raise ConfigError(
                    f"validation set: {len(val)} image(s) for {world} processes "
                    "(trainer.devices x trainer.num_nodes); every process needs at least one"
                )
            self.val_set = SegmentationDataset(
                val,
                size=self.data_config.size,
                mean=self.data_config.mean,
                std=self.data_config.std,
                augment=False,
                cache=self.cache,
            )
            if self.cache:
                self.val_set.preload()

    def _loader_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": torch.cuda.is_available(),
        }
        if self.num_workers > 0:
            kw["persistent_workers"] = True
        return kw

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        sizes = [len(d) for d in self.train_set.datasets]
        world, rank = self._replicas()
        sampler = RepeatSampler(
            sizes,
            [s.repeat for s in self.plan.sources],
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        drop_last = len(sampler) > self.batch_size  # avoid a 1-image batch (BatchNorm)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        world, rank = self._replicas()
        sampler = None
        if world > 1:  # every image once: shares differ by at most one image
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(
                self.val_set, num_replicas=world, rank=rank, shuffle=False
            )
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            **self._loader_kwargs(),
        )


def write_split(plan: DataPlan, path: Path) -> Path | None:
    """Save the split that was applied (``train``/``val``/``test`` names) as JSON."""
    if plan.split is None:
        return None
    import json

    from abanet.data.atomic import write_bytes_atomic

    payload = {
        **plan.split,
        "_meta": {"source": plan.split_source, "dataset": plan.sources[0].path},
    }
    text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=True)
