"""Splits: deterministic, group-disjoint, paper preset, list files, k-fold, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from abanet.data.readers import Sample
from abanet.data.splits import (
    apply_split,
    group_of,
    guess_group_rule,
    kfold_splits,
    load_folds,
    load_split,
    merge_groups,
    paper_split,
    sample_groups,
    save_split,
    split_by_ratios,
    split_from_lists,
    split_leaks,
)
from abanet.errors import DataError

PEOPLE = ["caiyilin", "wuyifan", "zhouxun", "luhan", "nini", "yangzi", "huangbo", "denglun"]


def _mfsd_names() -> list[str]:
    names = []
    for i, p in enumerate(PEOPLE):
        for j in range(1 + i % 4):
            names.append(f"faceMsak_{p}_0_{j}_{i + j}.jpg")
    names += [f"faceMsak_t1_JaredPolis_000{k}.jpg" for k in range(3)]
    names += [f"facemsak_t1_{n}_1_2.jpg" for n in (5851, 5864)]
    return names


def test_group_of_rules() -> None:
    assert group_of("faceMsak_caiyilin_0_0_5.jpg", "mfsd-crops") == "caiyilin"
    assert group_of("facemsak_wuyifan_0_0_14.jpg", "mfsd-crops") == "wuyifan"
    assert group_of("faceMsak_t1_JaredPolis_0003.jpg", "mfsd-crops") == "t1_JaredPolis"
    assert group_of("000123_2.jpg", "mfsd-release") == "000123"
    assert group_of("cwm_00042.jpg", "maskedface-net") == "00042"
    assert group_of("abc_def.png", r"^([a-z]+)_") == "abc"
    assert group_of("zzz.png", r"^([0-9]+)_") == "zzz.png"  # no match: its own group
    assert group_of("A-1.png", lambda n: n.split("-")[0]) == "A"
    assert group_of("x.png", None) == "x.png"
    with pytest.raises(DataError, match="capture group"):
        group_of("x", r"^x")
    assert guess_group_rule(_mfsd_names()) == "mfsd-crops"
    assert guess_group_rule(["a.png", "b.png"]) is None


def test_ratio_split_exact_counts_and_deterministic() -> None:
    names = [f"img{i:03d}.png" for i in range(100)]
    s1 = split_by_ratios(names, (0.8, 0.1, 0.1), seed=3)
    s2 = split_by_ratios(list(reversed(names)), (0.8, 0.1, 0.1), seed=3)
    s3 = split_by_ratios(names, (0.8, 0.1, 0.1), seed=4)
    assert s1 == s2  # input order does not matter
    assert s1 != s3
    assert [len(s1[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    assert sorted(s1["train"] + s1["val"] + s1["test"]) == names
    two = split_by_ratios(names[:7], (0.7, 0.3), seed=0)
    assert set(two) == {"train", "val"} and [len(two["train"]), len(two["val"])] == [5, 2]


def test_group_split_disjoint() -> None:
    names = _mfsd_names()
    for seed in range(5):
        s = split_by_ratios(names, (0.6, 0.2, 0.2), seed=seed, group_by="mfsd-crops")
        assert split_leaks(s, "mfsd-crops") == []
        assert sorted(n for v in s.values() for n in v) == sorted(names)
        assert all(len(v) > 0 for v in s.values())
    # the samples' own groups are used when no rule is given
    samples = [Sample(Path(n), Path(n), n, group_of(n, "mfsd-crops")) for n in names]
    s = split_by_ratios(samples, (0.6, 0.2, 0.2), seed=1)
    assert s == split_by_ratios(names, (0.6, 0.2, 0.2), seed=1, group_by="mfsd-crops")
    assert sample_groups(samples)["faceMsak_caiyilin_0_0_0.jpg"] == "caiyilin"


def test_paper_split_counts() -> None:
    names = [f"{i:05d}_1.jpg" for i in range(12758)]
    s = paper_split(names, seed=0, group_by="none")
    assert [len(s[k]) for k in ("train", "val", "test")] == [8500, 2500, 1758]
    small = paper_split(names[:100], seed=0, group_by="none")
    # 100 * (8500, 2500, 1758) / 12758 = 66.625, 19.595, 13.779: floors 66 + 19 + 13 = 98, the two
    # largest remainders (.779 test, .625 train) get the 2 left -> 67, 19, 14
    assert [len(small[k]) for k in ("train", "val", "test")] == [67, 19, 14]


def test_split_from_lists(tmp_path: Path) -> None:
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    (tmp_path / "train.txt").write_text("# train\na.jpg\nb\n\nzzz.jpg\n")
    (tmp_path / "val.txt").write_text("c.png\n")
    s, problems = split_from_lists(
        names, {"train": tmp_path / "train.txt", "val": tmp_path / "val.txt"}
    )
    assert s == {"train": ["a.jpg", "b.jpg"], "val": ["c.jpg"]}
    assert any("train.txt: 'zzz.jpg' is not in the dataset" in p for p in problems)
    assert any("1 samples are in no list (e.g. d.jpg)" in p for p in problems)
    with pytest.raises(DataError, match="also listed in train"):
        split_from_lists(names, {"train": ["a.jpg"], "test": ["a.jpg"]})


def test_kfold_covers_each_sample_once() -> None:
    names = _mfsd_names()
    folds = kfold_splits(names, k=4, seed=7, group_by="mfsd-crops")
    assert len(folds) == 4
    vals = [n for f in folds for n in f["val"]]
    assert sorted(vals) == sorted(names)  # each sample in exactly one val fold
    for f in folds:
        assert set(f["train"]).isdisjoint(f["val"])
        assert sorted(f["train"] + f["val"]) == sorted(names)
        assert split_leaks(f, "mfsd-crops") == []
    assert folds == kfold_splits(names, k=4, seed=7, group_by="mfsd-crops")
    plain = kfold_splits([f"{i}.png" for i in range(10)], k=3, seed=0)
    assert sorted(len(f["val"]) for f in plain) == [3, 3, 4]
    with pytest.raises(DataError, match="needs at least 5 groups"):
        kfold_splits(["a", "b", "c"], k=5)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    s = split_by_ratios([f"{i}.png" for i in range(10)], seed=0)
    p = save_split(s, tmp_path / "split.json", meta={"seed": 0})
    assert load_split(p) == s
    with pytest.raises(DataError, match="file exists"):
        save_split(s, p)
    folds = kfold_splits([f"{i}.png" for i in range(6)], k=3)
    fp = save_split(folds, tmp_path / "folds.json")
    assert load_folds(fp) == folds
    with pytest.raises(DataError, match="k-fold file"):
        load_split(fp)
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": ["a"], "val": ["a"]}')
    with pytest.raises(DataError, match="'a' is in both 'train' and 'val'"):
        load_split(bad)
    bad.write_text("[1, 2")
    with pytest.raises(DataError, match="bad.json: not a valid split file"):
        load_split(bad)


def test_apply_split() -> None:
    samples = [Sample(Path(f"/d/{n}"), Path(f"/m/{n}"), n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    parts = apply_split(samples, {"train": ["a.jpg", "b"], "test": ["c.jpg"]})
    assert [s.name for s in parts["train"]] == ["a.jpg", "b.jpg"]
    with pytest.raises(DataError, match=r"not in the dataset: 1 \(e.g. x.jpg\)"):
        apply_split(samples, {"train": ["x.jpg"]})


def test_merge_groups() -> None:
    groups = {"a": "A", "b": "B", "c": "C", "d": "D", "e": "A"}
    merged = merge_groups(groups, [["a", "b"], ["b", "c"]])
    assert merged["a"] == merged["b"] == merged["c"] == merged["e"]
    assert merged["d"] == "D"
