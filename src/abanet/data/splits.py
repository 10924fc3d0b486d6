"""Deterministic, group-aware dataset splits (ratios, list files, the paper preset, k-fold).

A split is a dict ``{"train": [names], "val": [names], "test": [names]}`` saved as JSON. Names are
``Sample.name`` values (file names such as ``faceMsak_caiyilin_0_0_5.jpg``). With a grouping rule,
every sample of one group (an identity, a photo) lands in the same split.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from abanet.errors import DataError

Split = dict[str, list[str]]
GroupRule = str | re.Pattern[str] | Callable[[str], str]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# The paper's split of MFSD's 12 758 labelled crops (section 5.1).
PAPER_COUNTS: dict[str, int] = {"train": 8500, "val": 2500, "test": 1758}

# Named grouping rules: a regex whose first group is the identity.
GROUP_PRESETS: dict[str, str] = {
    # Published MFSD test crops: faceMsak_<person>_..., or faceMsak_t1_<person or photo>_...
    "mfsd-crops": r"(?i)^facemsak_(t1_[^_]+|[^_]+)_",
    # MFSD release crops: <photo>_<face>.jpg -> photo
    "mfsd-release": r"^(\d+)_\d+\.",
    # MaskedFace-Net: cwm_/iwm_<ffhq id> -> FFHQ identity (the same face in both variants)
    "maskedface-net": r"^(?:[ci]wm|[ci]mfd)_(\d+)",
}


def _compile(rule: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(rule, re.Pattern):
        return rule
    pattern = GROUP_PRESETS.get(rule, rule)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"group rule {rule!r}: not a valid regex ({exc})") from exc
    if rx.groups < 1:
        raise DataError(f"group rule {rule!r}: the regex needs a capture group (the identity)")
    return rx


def group_of(name: str, rule: GroupRule | None) -> str:
    """The group (identity) of ``name`` under ``rule``: a preset name, a regex whose first group is
    the identity (names that do not match are their own group), or a callable. None: the name."""
    if rule is None:
        return name
    if callable(rule) and not isinstance(rule, str | re.Pattern):
        return str(rule(name))
    base = Path(name).name
    m = _compile(rule).search(base)
    return m.group(1) if m else name


def guess_group_rule(names: Sequence[str], min_fraction: float = 0.9) -> str | None:
    """The first preset in :data:`GROUP_PRESETS` matching at least ``min_fraction`` of the names."""
    if not names:
        return None
    for preset, pattern in GROUP_PRESETS.items():
        rx = re.compile(pattern)
        hits = sum(1 for n in names if rx.search(Path(n).name))
        if hits / len(names) >= min_fraction:
            return preset
    return None


def _names_and_groups(
    items: Iterable[Any], group_by: GroupRule | None | str
) -> tuple[list[str], dict[str, str]]:
    """Names (sorted, unique) and their groups. Items are names or objects with ``name``/``group``.

    ``group_by``: None uses the items' own ``group`` attribute when set (else one group per name);
    ``"none"`` forces one group per name; ``"auto"`` guesses a preset from the names.
    """
    names: list[str] = []
    own: dict[str, str | None] = {}
    for it in items:
        name = it if isinstance(it, str) else it.name
        names.append(name)
        own[name] = None if isinstance(it, str) else getattr(it, "group", None)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise DataError(f"duplicate sample names: {', '.join(dup)}")
    names = sorted(names)
    if group_by == "auto":
        group_by = guess_group_rule(names)
    if isinstance(group_by, str) and group_by.lower() == "none":
        return names, {n: n for n in names}
    if group_by is None:
        return names, {n: (own[n] if own[n] is not None else n) for n in names}
    return names, {n: group_of(n, group_by) for n in names}


def sample_groups(items: Iterable[Any], group_by: GroupRule | None | str = None) -> dict[str, str]:
    """``{name: group}`` under the same rules the split functions use."""
    return _names_and_groups(items, group_by)[1]


def merge_groups(groups: Mapping[str, str], together: Iterable[Sequence[str]]) -> dict[str, str]:
    """Return ``groups`` with each set of names in ``together`` (e.g. exact duplicate images)
    forced into one group: every group touched by a set is merged (union-find)."""
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.get(g, g) != g:
            g = parent[g]
        return g

    for names in together:
        roots = sorted({find(groups[n]) for n in names if n in groups})
        for r in roots[1:]:
            parent[r] = roots[0]
    return {n: find(g) for n, g in groups.items()}


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Integer counts summing to ``total`` proportional to ``weights`` (largest remainder)."""
    s = float(sum(weights))
    exact = [total * w / s for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _validate_ratios(ratios: Sequence[float], split_names: Sequence[str]) -> None:
    if len(ratios) != len(split_names):
        raise DataError(f"{len(ratios)} ratios given for {len(split_names)} splits")
    if any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(f"ratios must be >= 0 and not all zero, got {list(ratios)}")


def _assign_groups(
    groups: dict[str, list[str]], targets: Sequence[int], seed: int
) -> list[list[str]]:
    """Shuffle groups (seeded) and give each to the split with the largest remaining deficit."""
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    buckets: list[list[str]] = [[] for _ in targets]
    for k in keys:
        deficits = [t - len(b) for t, b in zip(targets, buckets, strict=True)]
        best = max(range(len(targets)), key=lambda i: (deficits[i], -i))
        buckets[best].extend(groups[k])
    return [sorted(b) for b in buckets]


def split_by_ratios(
    items: Iterable[Any],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_by: GroupRule | None = None,
    split_names: Sequence[str] = SPLIT_NAMES,
) -> Split:
    """Seeded split by ratios (normalised to sum 1; counts by largest remainder).

    Without groups the counts are exact. With groups (``group_by`` or the samples' ``group``) no
    group is divided, so counts are as close to the targets as whole groups allow.
    """
    split_names = tuple(split_names)[: len(ratios)] if len(ratios) < 3 else tuple(split_names)
    _validate_ratios(ratios, split_names)
    names, groups_of = _names_and_groups(items, group_by)
    targets = _largest_remainder(len(names), ratios)
    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        groups[groups_of[n]].append(n)
    if all(len(v) == 1 for v in groups.values()):
        order = list(names)
        random.Random(seed).shuffle(order)
        out, start = {}, 0
        for sname, count in zip(split_names, targets, strict=True):
            out[sname] = sorted(order[start : start + count])
            start += count
        return out
    buckets = _assign_groups(groups, targets, seed)
    return dict(zip(split_names, buckets, strict=True))


def paper_split(items: Iterable[Any], seed: int = 0, group_by: GroupRule | None = None) -> Split:
    """The paper's 8500 / 2500 / 1758 split; on data of another size the three counts are scaled
    proportionally (66.6% / 19.6% / 13.8%, largest-remainder rounding)."""
    return split_by_ratios(
        items,
        [PAPER_COUNTS[k] for k in SPLIT_NAMES],
        seed=seed,
        group_by=group_by,
    )


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """Names from a text file: one per line, blank lines and ``#`` comments ignored."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read name list ({exc})") from exc
    out = []
    for line in text.splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            out.append(s.replace("\\", "/"))
    return out


def _resolver(names: Sequence[str]) -> Callable[[str], str | None]:
    """Match a listed entry to a dataset name: exact, then file name, then stem (if unique)."""
    exact = set(names)
    by_base: dict[str, list[str]] = defaultdict(list)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for n in names:
        by_base[Path(n).name].append(n)
        by_stem[Path(n).with_suffix("").as_posix()].append(n)
        by_stem[Path(n).stem].append(n)

    def resolve(entry: str) -> str | None:
        if entry in exact:
            return entry
        for table, key in (
            (by_base, Path(entry).name),
            (by_stem, Path(entry).with_suffix("").as_posix()),
            (by_stem, Path(entry).stem),
        ):
            hits = sorted(set(table.get(key, [])))
            if len(hits) == 1:
                return hits[0]
        return None

    return resolve


def split_from_lists(
    items: Iterable[Any],
    lists: Mapping[str, str | os.PathLike[str] | Sequence[str]],
) -> tuple[Split, list[str]]:
    """Split from name lists (text files or lists), e.g. ``{"train": "train.txt", ...}``.

    Entries match a sample's name, file name or stem. Returns the split and a list of problems
    (unknown entries, samples in no list). A sample listed in two splits raises DataError.
    """
    names, _ = _names_and_groups(items, "none")
    resolve = _resolver(names)
    out: Split = {}
    owner: dict[str, str] = {}
    problems: list[str] = []
    for sname, src in lists.items():
        if isinstance(src, str | os.PathLike):
            entries, where = read_name_list(src), str(src)
        else:
            entries, where = list(src), sname
        chosen: list[str] = []
        for e in entries:
            n = resolve(e)
            if n is None:
                problems.append(f"{where}: {e!r} is not in the dataset")
                continue
            if n in owner and owner[n] != sname:
                raise DataError(f"{where}: {e!r} is also listed in {owner[n]}")
            if n not in owner:
                owner[n] = sname
                chosen.append(n)
        out[sname] = sorted(chosen)
    missing = [n for n in names if n not in owner]
    if missing:
        problems.append(f"{len(missing)} samples are in no list (e.g. {', '.join(missing[:3])})")
    return out, problems


def kfold_splits(
    items: Iterable[Any],
    k: int = 5,
    seed: int = 0,
    group_by: GroupRule | None = None,
) -> list[Split]:
    """``k`` folds, each ``{"train": [...], "val": [...]}``; every sample is in exactly one ``val``.

    Group-aware: groups are shuffled (seeded), then each goes to the currently smallest fold.
    """
    names, groups_of = _names_and_groups(items, group_by)
    if k < 2:
        raise DataError(f"k-fold needs k >= 2, got {k}")
    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        groups[groups_of[n]].append(n)
    if len(groups) < k:
        raise DataError(f"k-fold with k={k} needs at least {k} groups, got {len(groups)}")
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in keys:
        i = min(range(k), key=lambda j: (len(folds[j]), j))
        folds[i].extend(groups[g])
    out = []
    for i in range(k):
        val = set(folds[i])
        out.append({"train": [n for n in names if n not in val], "val": sorted(val)})
    return out


def split_leaks(split: Mapping[str, Sequence[str]], group_by: GroupRule | None) -> list[str]:
    """Groups found in more than one split (empty when the split is group-disjoint)."""
    where: dict[str, set[str]] = defaultdict(set)
    for sname, names in split.items():
        for n in names:
            where[group_of(n, group_by)].add(sname)
    return sorted(g for g, s in where.items() if len(s) > 1)


def _validate_split(obj: Any, where: str) -> Split:
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{where}: a split must be a JSON object of name lists")
    out: Split = {}
    owner: dict[str, str] = {}
    for key, names in obj.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{where}: {key!r} must be a list of names")
        for n in names:
            if n in owner:
                raise DataError(f"{where}: {n!r} is in both {owner[n]!r} and {key!r}")
            owner[n] = key
        out[str(key)] = list(names)
    return out


def save_split(
    split: Mapping[str, Sequence[str]] | Sequence[Mapping[str, Sequence[str]]],
    path: str | os.PathLike[str],
    overwrite: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a split (or a list of k-fold splits as ``{"folds": [...]}``) as JSON, atomically.

    ``meta`` (seed, ratios...) is stored under ``"_meta"`` and ignored by :func:`load_split`.
    """
    from abanet.data.atomic import write_bytes_atomic

    if isinstance(split, Mapping):
        payload: dict[str, Any] = {k: list(v) for k, v in split.items()}
    else:
        payload = {"folds": [{k: list(v) for k, v in f.items()} for f in split]}
    if meta:
        payload["_meta"] = dict(meta)
    text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def _read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: not a valid split file ({str(exc).splitlines()[0]})") from exc


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a split JSON (``{"train": [...], "val": [...], "test": [...]}``)."""
    obj = _read_json(path)
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != "_meta"}
        if "folds" in obj:
            raise DataError(f"{path}: this is a k-fold file; use load_folds")
    return _validate_split(obj, str(path))


def load_folds(path: str | os.PathLike[str]) -> list[Split]:
    """Read a k-fold JSON (``{"folds": [{"train": [...], "val": [...]}, ...]}``)."""
    obj = _read_json(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("folds"), list):
        raise DataError(f"{path}: not a k-fold file (no 'folds' list)")
    return [_validate_split(f, f"{path} fold {i}") for i, f in enumerate(obj["folds"])]


def apply_split(samples: Sequence[Any], split: Mapping[str, Sequence[str]]) -> dict[str, list[Any]]:
    """Samples per split, matched by name (or file name / stem). DataError lists unknown names."""
    names = [s.name for s in samples]
    by_name = {s.name: s for s in samples}
    resolve = _resolver(names)
    out: dict[str, list[Any]] = {}
    unknown: list[str] = []
    for sname, entries in split.items():
        chosen = []
        for e in entries:
            n = resolve(e)
            if n is None:
                unknown.append(e)
            else:
                chosen.append(by_name[n])
        out[sname] = chosen
    if unknown:
        raise DataError(
            f"split names not in the dataset: {len(unknown)} (e.g. {', '.join(unknown[:3])})"
        )
    return out
