"""``abanet data filter``: keep the photos that show at least one masked face.

Each photo goes through the full-photo pipeline (:mod:`abanet.faces.pipeline`: the face detector,
then the model on each face crop). A face counts as masked when its mask score (the mean mask
probability around its mouth, :func:`abanet.faces.pipeline.mask_score`) is at least
``min_mask_score``, by default the pipeline's own :data:`~abanet.faces.pipeline.MIN_MASK_SCORE`.
Each photo gets one verdict:

================ ======= =========================================================
reason           kept    when
================ ======= =========================================================
``masked-face``  yes     some face's mask score >= ``min_mask_score``
``no-face``      no      the detector found no face
``bare-faces``   no      faces, none with a mask score >= ``min_mask_score``
``unreadable``   no      the file cannot be decoded
================ ======= =========================================================

Kept photos are copied (or hard-linked, or symlinked) into the output folder at their path
relative to the input folder; an existing file there is kept unless ``overwrite``. The report, a
CSV with one row per photo (verdict, reason, every face's mask score), is appended to as the run
goes, so an interrupted run resumes where it stopped: photos the report lists are not looked at
again (``overwrite`` starts over).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abanet.data.atomic import atomic_temp, publish, write_bytes_atomic
from abanet.errors import DataError, ImageReadError, OutputExistsError, UsageError
from abanet.faces.pipeline import MIN_MASK_SCORE

KEPT = "masked-face"
NO_FACE = "no-face"
BARE = "bare-faces"
UNREADABLE = "unreadable"
#: how kept photos reach the output folder
PLACE_MODES = ("copy", "hardlink", "symlink")
#: the report's name in the output folder unless another path is given
REPORT_NAME = "filter_report.csv"
REPORT_COLUMNS = ("photo", "kept", "reason", "faces", "mask_scores", "min_mask_score", "detail")


@dataclass(frozen=True)
class Verdict:
    """What the filter decided for one photo (``photo``: its path relative to the input)."""

    photo: str
    reason: str
    scores: tuple[float, ...] = ()  # every face's mask score, highest first
    min_mask_score: float = MIN_MASK_SCORE
    detail: str = ""

    @property
    def kept(self) -> bool:
        return self.reason == KEPT

    def row(self) -> dict[str, str]:
        """The report's CSV row."""
        return {
            "photo": self.photo,
            "kept": "yes" if self.kept else "no",
            "reason": self.reason,
            "faces": str(len(self.scores)),
            "mask_scores": " ".join(f"{s:.4f}" for s in self.scores),
            "min_mask_score": f"{self.min_mask_score:g}",
            "detail": self.detail,
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Verdict:
        """A report row read back (:class:`DataError` when it is not one)."""
        try:
            scores = tuple(float(s) for s in row["mask_scores"].split())
            return cls(
                row["photo"], row["reason"], scores, float(row["min_mask_score"]), row["detail"]
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"not a filter report row: {row}") from None


def decide(scores: Sequence[float], min_mask_score: float = MIN_MASK_SCORE) -> str:
    """The reason for a photo whose faces have mask ``scores`` (none: no face was found)."""
    if not scores:
        return NO_FACE
    return KEPT if max(scores) >= min_mask_score else BARE


def face_scores(segmenter: Any, path: str | os.PathLike[str]) -> tuple[float, ...]:
    """Mask scores of the faces the segmenter's pipeline finds in the photo, highest first
    (:class:`ImageReadError` for an unreadable file)."""
    from abanet.data.io import read_image

    result = segmenter.segment(read_image(path))
    return tuple(sorted((float(f.mask_score) for f in result.faces), reverse=True))


def judge(segmenter: Any, path: Path, name: str, min_mask_score: float = MIN_MASK_SCORE) -> Verdict:
    """The verdict for one photo file, reported under ``name``."""
    try:
        scores = face_scores(segmenter, path)
    except ImageReadError as exc:
        return Verdict(name, UNREADABLE, (), min_mask_score, str(exc).removeprefix(f"{path}: "))
    return Verdict(name, decide(scores, min_mask_score), scores, min_mask_score)


def place_file(src: Path, dst: Path, mode: str = "copy", overwrite: bool = False) -> bool:
    """Put ``src`` at ``dst`` by ``mode`` (:data:`PLACE_MODES`); False when ``dst`` exists and
    ``overwrite`` is off (the file there is kept). Copies appear in one step (atomic)."""
    if mode not in PLACE_MODES:
        raise UsageError(f"--link {mode!r}: choose one of {', '.join(PLACE_MODES)}")
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        if mode == "copy":
            fd, tmp = atomic_temp(dst)
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                publish(tmp, dst, overwrite)
            finally:
                Path(tmp).unlink(missing_ok=True)
            return True
        make = os.link if mode == "hardlink" else os.symlink
        target = src if mode == "hardlink" else src.resolve()
        if not overwrite:
            make(target, dst)  # fails when dst exists: never replaces a file
            return True
        fd, tmp = atomic_temp(dst)
        os.close(fd)
        Path(tmp).unlink()
        make(target, tmp)
        os.replace(tmp, dst)
    except (FileExistsError, OutputExistsError):
        return False
    except OSError as exc:
        hint = " (hard links need one file system: use --link copy)" if mode == "hardlink" else ""
        raise DataError(f"{dst}: cannot {mode} {src} ({exc.strerror or exc}){hint}") from None
    return True


@dataclass
class FilterSummary:
    """What :func:`filter_photos` did."""

    verdicts: list[Verdict] = field(default_factory=list)
    placed: int = 0  # kept photos copied/linked this run
    existed: int = 0  # kept photos whose output file was already there (kept as it was)
    resumed: int = 0  # verdicts taken from an earlier run's report
    report: Path | None = None
    problems: list[str] = field(default_factory=list)  # inputs that could not be gathered

    def counts(self) -> Counter[str]:
        return Counter(v.reason for v in self.verdicts)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        c = self.counts()
        kept = c[KEPT]
        return (
            f"{len(self.verdicts)} photos: {kept} kept ({self.placed} placed, {self.existed} "
            f"already there), {len(self.verdicts) - kept} dropped ({c[NO_FACE]} no face, "
            f"{c[BARE]} only bare faces, {c[UNREADABLE]} unreadable); "
            f"{self.resumed} from the earlier report"
        )


def read_report(path: Path) -> list[Verdict]:
    """The verdicts of a filter report; a half-written last line (interrupted run) is dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the filter report ({exc})") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != REPORT_COLUMNS:
        raise DataError(
            f"{path}: exists and is not a filter report (pass --overwrite to replace it)"
        )
    try:
        return [Verdict.from_row(row) for row in reader]
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _csv_text(rows: Iterable[dict[str, str]], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, REPORT_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def gather_photos(
    inputs: Sequence[str | os.PathLike[str]], exclude: Path | None = None
) -> tuple[dict[str, Path], list[str]]:
    """``{name: path}`` of the image files in ``inputs`` (folders searched recursively, names
    relative to the folder; a file is named by its file name), and the problems found. Nothing
    under ``exclude`` (the output folder) is taken from a folder."""
    from abanet.data.io import is_image_file, list_images

    skip = exclude.resolve() if exclude is not None else None
    found: dict[str, Path] = {}
    problems: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = [
                (p.relative_to(path).as_posix(), p)
                for p in list_images(path, recursive=True)
                if skip is None or not p.resolve().is_relative_to(skip)
            ]
            if not files:
                problems.append(f"{path}: folder holds no images")
        elif path.is_file() and is_image_file(path):
            files = [(path.name, path)]
        elif path.is_file():
            problems.append(f"{path}: not an image file (by its extension)")
            continue
        else:
            problems.append(f"{path}: no such file or folder")
            continue
        for name, p in files:
            if name in found and found[name] != p:
                problems.append(f"{p}: name {name} already taken by {found[name]}; skipped")
                continue
            found[name] = p
    return found, problems


def filter_photos(
    segmenter: Any,
    photos: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    min_mask_score: float = MIN_MASK_SCORE,
    mode: str = "copy",
    overwrite: bool = False,
    report: str | os.PathLike[str] | None = None,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
) -> FilterSummary:
    """Judge every photo (files, folders searched recursively, globs), place the kept ones in
    ``out`` at their relative paths and write the report (default ``out/filter_report.csv``).

    A report left by an earlier run with the same ``min_mask_score`` is resumed: its photos are
    not judged again (kept ones missing from ``out`` are placed again). ``overwrite`` starts
    over and replaces files in ``out``.
    """
    if not 0.0 <= min_mask_score <= 1.0:
        raise UsageError(f"--min-mask-score {min_mask_score}: must be between 0 and 1")
    if mode not in PLACE_MODES:
        raise UsageError(f"--link {mode!r}: choose one of {', '.join(PLACE_MODES)}")
    out = Path(out)
    report_path = Path(report) if report is not None else out / REPORT_NAME
    found, problems = gather_photos(photos, exclude=out)
    summary = FilterSummary(report=report_path, problems=problems)
    done: dict[str, Verdict] = {}
    if report_path.exists() and not overwrite:
        earlier = read_report(report_path)
        other = {v.min_mask_score for v in earlier} - {min_mask_score}
        if other:
            raise UsageError(
                f"{report_path}: made with --min-mask-score {other.pop():g}; resume with the "
                f"same value, or pass --overwrite (or another output folder) to start over"
            )
        done = {v.photo: v for v in earlier}
    # the report is rewritten whole first (dropping a half-written line), then appended to
    rows = [v.row() for v in done.values()]
    write_bytes_atomic(report_path, _csv_text(rows, True).encode("utf-8"), overwrite=True)

    def keep(verdict: Verdict) -> None:
        if verdict.kept:
            if place_file(found[verdict.photo], out / verdict.photo, mode, overwrite):
                summary.placed += 1
            else:
                summary.existed += 1
        summary.verdicts.append(verdict)

    todo = []
    for name in found:
        if name in done:
            keep(done[name])
            summary.resumed += 1
        else:
            todo.append(name)
    steps: Iterator[Any] = iter(todo)
    if progress is not None:
        steps = progress(steps, len(todo))
    with report_path.open("a", encoding="utf-8", newline="") as fh:
        for name in steps:
            verdict = judge(segmenter, found[name], name, min_mask_score)
            keep(verdict)  # placed before it is reported: a listed photo is done
            fh.write(_csv_text([verdict.row()], False))
            fh.flush()
    return summary
