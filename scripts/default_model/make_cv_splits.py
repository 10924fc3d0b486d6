"""Nested k-fold splits for an honest estimate on a small real set.

For fold i: ``test`` = fold i (never trained on, never used for model selection), ``val`` = a
group-aware ``val_ratio`` of the remaining images (checkpoint selection), ``train`` = the rest.

    python scripts/default_model/make_cv_splits.py ../shared/data/mfsd-dev runs/cv-splits -k 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

from abanet.data import kfold_splits, open_dataset, save_split, split_by_ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--val-ratio", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    samples, _problems = open_dataset(args.data)
    by_name = {s.name: s for s in samples}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, fold in enumerate(kfold_splits(samples, k=args.k, seed=args.seed)):
        rest = [by_name[n] for n in fold["train"]]
        inner = split_by_ratios(rest, (1 - args.val_ratio, args.val_ratio), seed=args.seed)
        split = {"train": inner["train"], "val": inner["val"], "test": list(fold["val"])}
        path = save_split(
            split,
            out / f"fold{i}.json",
            overwrite=True,
            meta={"fold": i, "k": args.k, "seed": args.seed, "data": args.data},
        )
        print(
            f"{path}: train {len(split['train'])}, val {len(split['val'])}, "
            f"test {len(split['test'])}"
        )


if __name__ == "__main__":
    main()
