"""Exact and near-duplicate images, within and across folders (``abanet data dedup``).

Exact duplicates have the same bytes (SHA-1 of the file). Near duplicates (a resized,
recompressed or slightly edited copy) have perceptual hashes (``imagehash.phash``: the signs of
the lowest 8x8 DCT coefficients of the 32x32 grey image, 64 bits) at most ``max_distance`` bits
apart. Images linked by either are one group (transitively). In each group one image is kept: the
one in the earliest folder given, then the largest (pixels), then the first by path; the others
are its duplicates, which :func:`move_duplicates` moves (with their masks) or deletes.

A folder that is a dataset (``images/`` + ``masks/``, MFSD, LabelMe) is read with
:func:`abanet.data.readers.open_dataset`, so each image brings its mask along; any other folder
is searched for images recursively.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abanet.data.readers import Problem, Sample
from abanet.errors import AbanetError, DataError, UsageError

#: near duplicates: phash Hamming distance at most this (of 64 bits); measured in docs/data.md
MAX_DISTANCE = 6


def file_sha1(path: str | os.PathLike[str]) -> str:
    """SHA-1 of a file's bytes (hex)."""
    h = hashlib.sha1()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def duplicate_sets(samples: Sequence[Sample]) -> list[list[Sample]]:
    """Groups of samples whose image files have identical bytes (only groups of 2 or more).

    Images embedded in LabelMe json files and unreadable files are left out.
    """
    seen: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.image_path.suffix.lower() == ".json" or not s.image_path.is_file():
            continue
        try:
            seen[file_sha1(s.image_path)].append(s)
        except OSError:
            continue
    return [v for v in seen.values() if len(v) > 1]


@dataclass(frozen=True)
class Entry:
    """One image: the folder it came from (index into the folders given), its files and hashes.

    ``files`` is the image and, for a labelled pair, its mask (the LabelMe json), which move
    together; ``rel`` places them under the folders' common parent.
    """

    folder: int
    image: Path
    files: tuple[Path, ...]
    sha1: str
    phash: int
    pixels: int


@dataclass
class Group:
    """Images that are duplicates of each other; ``keep`` first, then its ``duplicates``."""

    keep: Entry
    duplicates: list[Entry]
    exact: bool  # every member has the kept image's bytes
    distance: int  # largest phash distance of a duplicate to the kept image

    @property
    def members(self) -> list[Entry]:
        return [self.keep, *self.duplicates]

    @property
    def folders(self) -> list[int]:
        return sorted({e.folder for e in self.members})


@dataclass
class DedupReport:
    """Result of :func:`find_duplicates`."""

    folders: list[Path]
    entries: list[Entry] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    max_distance: int = MAX_DISTANCE

    @property
    def duplicates(self) -> list[Entry]:
        return [d for g in self.groups for d in g.duplicates]

    def cross_folder(self) -> list[Group]:
        """Groups with members in more than one folder (leakage between splits)."""
        return [g for g in self.groups if len(g.folders) > 1]

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        def name(p: Path) -> str:
            return relative_to_base(p, base).as_posix() if base else str(p)

        return {
            "folders": [str(f) for f in self.folders],
            "images": len(self.entries),
            "max_distance": self.max_distance,
            "groups": [
                {
                    "exact": g.exact,
                    "distance": g.distance,
                    "folders": [str(self.folders[i]) for i in g.folders],
                    "keep": name(g.keep.image),
                    "duplicates": [
                        {
                            "image": name(d.image),
                            "distance": phash_distance(d.phash, g.keep.phash),
                            "exact": d.sha1 == g.keep.sha1,
                            "files": [name(f) for f in d.files],
                        }
                        for d in g.duplicates
                    ],
                }
                for g in self.groups
            ],
            "problems": [p.to_dict() for p in self.problems],
        }


def phash_bits(image_rgb: np.ndarray, hash_size: int = 8) -> int:
    """The perceptual hash (``imagehash.phash``) of an RGB array as an integer."""
    import imagehash
    from PIL import Image

    h = imagehash.phash(Image.fromarray(image_rgb), hash_size=hash_size)
    return int(str(h), 16)


def phash_distance(a: int, b: int) -> int:
    """Hamming distance between two hashes."""
    return (a ^ b).bit_count()


def close_pairs(
    hashes: Sequence[int], max_distance: int, block: int = 2048
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of 64-bit hashes at most ``max_distance`` bits apart."""
    h = np.asarray(hashes, dtype=np.uint64)
    out: list[tuple[int, int]] = []
    for start in range(0, len(h), block):
        rows = h[start : start + block]
        dist = np.bitwise_count(rows[:, None] ^ h[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = ii < jj
        out.extend(zip(ii[keep].tolist(), jj[keep].tolist(), strict=True))
    return out


def _dataset_samples(folder: Path) -> tuple[list[Sample], list[Problem]]:
    """The folder's samples when it is a dataset, else every image in it as an unlabelled one."""
    from abanet.data.io import list_images
    from abanet.data.readers import detect_kind, open_dataset

    try:
        detect_kind(folder)
    except DataError:
        if not folder.is_dir():
            raise
        images = list_images(folder, recursive=True)
        return [Sample(p, None, p.relative_to(folder).as_posix()) for p in images], []
    samples, problems = open_dataset(folder, recursive=True)
    # reader problems about missing partners are not this command's business
    return samples, [p for p in problems if p.kind == "unreadable"]


def read_entry(sample: Sample, folder: int) -> Entry:
    """Hash one sample's image (:class:`AbanetError` or ``OSError`` when it cannot be read)."""
    from abanet.data.readers import labelme_embedded_bytes, load_image

    image = load_image(sample)
    embedded = sample.image_path.suffix.lower() == ".json"
    sha1 = (
        hashlib.sha1(labelme_embedded_bytes(sample.image_path)).hexdigest()
        if embedded
        else file_sha1(sample.image_path)
    )
    files = [sample.image_path]
    if sample.mask_path is not None and sample.mask_path != sample.image_path:
        files.append(sample.mask_path)
    return Entry(
        folder,
        sample.image_path,
        tuple(files),
        sha1,
        phash_bits(image),
        int(image.shape[0] * image.shape[1]),
    )


def find_duplicates(
    folders: Sequence[str | os.PathLike[str]],
    max_distance: int = MAX_DISTANCE,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> DedupReport:
    """Hash every image of ``folders`` and group exact and near duplicates (module doc).

    ``max_distance`` < 0 finds exact duplicates only. An image reachable through two of the
    folders (nested folders) is counted once, in the first.
    """
    if max_distance > 64:
        raise UsageError(f"--max-distance {max_distance}: a phash has 64 bits")
    roots = [Path(f) for f in folders]
    if not roots:
        raise UsageError("give at least one folder")
    report = DedupReport(roots, max_distance=max_distance)
    todo: list[tuple[Sample, int]] = []
    seen: set[Path] = set()
    for i, root in enumerate(roots):
        if not root.is_dir():
            raise DataError(f"{root}: not a folder")
        samples, problems = _dataset_samples(root)
        report.problems.extend(problems)
        for s in samples:
            key = s.image_path.resolve()
            if key not in seen:
                seen.add(key)
                todo.append((s, i))
    steps: Iterable[Any] = todo if progress is None else progress(todo, len(todo))
    for s, i in steps:
        try:
            report.entries.append(read_entry(s, i))
        except (AbanetError, OSError) as exc:
            message = str(exc).removeprefix(f"{s.image_path}: ")
            report.problems.append(Problem(str(s.image_path), "unreadable", message))
    report.groups = group_entries(report.entries, max_distance)
    return report


def group_entries(entries: Sequence[Entry], max_distance: int = MAX_DISTANCE) -> list[Group]:
    """Union of exact (same SHA-1) and near (phash distance <= ``max_distance``) links; groups of
    two or more, each with its kept image chosen as in the module doc, largest groups first."""
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, e in enumerate(entries):
        if e.sha1 in first:
            union(first[e.sha1], i)
        else:
            first[e.sha1] = i
    if max_distance >= 0:
        for i, j in close_pairs([e.phash for e in entries], max_distance):
            union(i, j)
    members: dict[int, list[Entry]] = defaultdict(list)
    for i, e in enumerate(entries):
        members[find(i)].append(e)
    groups = []
    for group in members.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda e: (e.folder, -e.pixels, e.image.as_posix()))
        keep, dups = group[0], group[1:]
        groups.append(
            Group(
                keep,
                dups,
                all(d.sha1 == keep.sha1 for d in dups),
                max(phash_distance(d.phash, keep.phash) for d in dups),
            )
        )
    groups.sort(key=lambda g: (-len(g.duplicates), g.keep.folder, g.keep.image.as_posix()))
    return groups


def common_base(folders: Sequence[Path]) -> Path:
    """The folder duplicates are placed relative to: the common parent of the folders' parents
    (so ``seg500/train`` and ``seg500/test`` keep their ``train/``, ``test/`` prefix)."""
    return Path(os.path.commonpath([str(Path(f).resolve().parent) for f in folders]))


def relative_to_base(path: Path, base: Path) -> Path:
    """``path`` relative to ``base`` (resolved), or the path itself when outside it."""
    try:
        return path.resolve().relative_to(base)
    except ValueError:
        return path


@dataclass
class MoveSummary:
    """What :func:`move_duplicates` did."""

    moved: list[Path] = field(default_factory=list)  # images moved or deleted (their masks too)
    files: int = 0  # files moved or deleted, masks included
    skipped: list[str] = field(default_factory=list)  # why an image stayed where it was


def move_duplicates(
    report: DedupReport, move_to: str | os.PathLike[str] | None = None, delete: bool = False
) -> MoveSummary:
    """Move every duplicate (image and mask) to ``move_to`` at its path relative to the folders'
    common parent, or delete them with ``delete``. A file already at the target is never
    replaced: that duplicate stays and is listed in ``skipped``."""
    if (move_to is None) != delete:
        raise UsageError("give one of --move-to DIR and --delete")
    base = common_base(report.folders)
    summary = MoveSummary()
    for entry in report.duplicates:
        present = [f for f in entry.files if f.exists()]
        if not present:
            summary.skipped.append(f"{entry.image}: no longer there")
            continue
        if delete:
            for f in present:
                f.unlink()
            summary.moved.append(entry.image)
            summary.files += len(present)
            continue
        rels = [relative_to_base(f, base) for f in present]
        if any(r.is_absolute() for r in rels):
            summary.skipped.append(f"{entry.image}: a file of it lies outside the folders")
            continue
        targets = [Path(str(move_to)) / r for r in rels]
        clash = next((t for t in targets if t.exists() or t.is_symlink()), None)
        if clash is not None:
            summary.skipped.append(f"{entry.image}: {clash} exists, not moved")
            continue
        for f, t in zip(present, targets, strict=True):
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(f), str(t))
        summary.moved.append(entry.image)
        summary.files += len(present)
    return summary
