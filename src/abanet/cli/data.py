"""``abanet data``: check a dataset, make splits, convert LabelMe annotations, filter raw photos,
find duplicates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer

data_app = typer.Typer(
    name="data",
    help="Dataset tools: check, split, convert-labelme, filter, dedup, stats.",
    no_args_is_help=True,
    add_completion=False,
)

KIND_HELP = "Layout: auto, folders (images/+masks/), mfsd (MSFD/1/face_crop...), labelme (*.json)."
LABELS_HELP = "LabelMe labels that count as mask, comma-separated ('*' = every shape)."


def _labels(text: str | None) -> tuple[str, ...]:
    from abanet.data.readers import DEFAULT_LABELME_LABELS

    if not text:
        return DEFAULT_LABELME_LABELS
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _print_report(report: Any, root: Path, max_problems: int) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    d = report.to_dict()
    table = Table(title=f"abanet data check: {root}", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("layout", d["kind"])
    table.add_row("samples (images)", str(d["samples"]))
    table.add_row("pairs (image + mask)", str(d["pairs"]))
    table.add_row("groups (identities/photos)", str(d["groups"]))
    sizes = list(d["image_sizes"].items())
    size_text = ", ".join(f"{k} x{v}" for k, v in sizes[:3])
    if len(sizes) > 3:
        size_text += f", ... ({len(sizes)} sizes)"
    table.add_row("image sizes", size_text or "-")
    fg = d["foreground_fraction"]
    if fg["mean"] is not None:
        table.add_row(
            "mask foreground", f"mean {fg['mean']:.1%} (min {fg['min']:.1%}, max {fg['max']:.1%})"
        )
    for kind, n in d["problem_counts"].items():
        table.add_row(f"problem: {kind}", str(n))
    table.add_row("errors", Text(str(d["errors"]), style="red bold" if d["errors"] else "green"))
    table.add_row("warnings", Text(str(d["warnings"]), style="yellow" if d["warnings"] else ""))
    console.print(table)
    problems = sorted(report.problems, key=lambda p: (p.severity != "error", p.kind, p.path))
    for p in problems[:max_problems]:
        line = Text()
        line.append(
            "ERROR  " if p.severity == "error" else "warn   ",
            style="red" if p.severity == "error" else "yellow",
        )
        message = p.message.replace(f"{str(root).rstrip('/')}/", "")
        line.append(f"[{p.kind}] {_rel(p.path, root)}: {message}")
        console.print(line)
    if len(problems) > max_problems:
        console.print(f"... {len(problems) - max_problems} more problems (see --json)")
    status = "FAILED" if d["errors"] else "OK"
    console.print(
        Text(
            f"{status}: {d['pairs']} pairs, {d['errors']} errors, {d['warnings']} warnings",
            style="red bold" if d["errors"] else "green bold",
        )
    )


@data_app.command("check")
def check(
    directory: Path = typer.Argument(..., help="Dataset folder."),
    kind: str = typer.Option("auto", "--kind", help=KIND_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
    recursive: bool = typer.Option(False, "--recursive", help="Look into subfolders."),
    labels: str | None = typer.Option(None, "--labels", help=LABELS_HELP),
    threshold: int = typer.Option(127, "--threshold", help="Mask foreground is value > this."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates", help="Hash images."),
    max_problems: int = typer.Option(50, "--max-problems", help="Problems to print."),
) -> None:
    """Count pairs and list every problem; exit code 1 when there are errors."""
    from abanet.data.atomic import write_bytes_atomic
    from abanet.data.check import check_dataset
    from abanet.data.readers import detect_kind, open_dataset
    from abanet.errors import AbanetError

    if json_out is not None and json_out.exists() and not overwrite:
        raise AbanetError(f"{json_out}: file exists (pass --overwrite to replace it)")
    k = detect_kind(directory) if kind == "auto" else kind
    samples, problems = open_dataset(directory, k, recursive=recursive, labels=_labels(labels))
    report = check_dataset(
        samples,
        problems,
        root=str(directory),
        kind=k,
        threshold=threshold,
        duplicates=duplicates,
    )
    _print_report(report, directory, max_problems)
    if json_out is not None:
        text = json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n"
        write_bytes_atomic(json_out, text.encode("utf-8"), overwrite=overwrite)
        typer.echo(f"report written to {json_out}")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("split")
def split(
    directory: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Split JSON to write."),
    kind: str = typer.Option("auto", "--kind", help=KIND_HELP),
    ratios: str = typer.Option("0.8,0.1,0.1", "--ratios", help="train,val[,test] ratios."),
    preset: str | None = typer.Option(
        None, "--preset", help="'paper': 8500/2500/1758 scaled to the data size."
    ),
    train_list: Path | None = typer.Option(None, "--train-list", help="Names for train."),
    val_list: Path | None = typer.Option(None, "--val-list", help="Names for val."),
    test_list: Path | None = typer.Option(None, "--test-list", help="Names for test."),
    kfold: int = typer.Option(0, "--kfold", help="Write K cross-validation folds instead."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    group_by: str = typer.Option(
        "auto",
        "--group-by",
        help="auto (name presets, else the reader's groups), none, a preset "
        "(mfsd-crops, mfsd-release, maskedface-net) or a regex whose first group is the identity.",
    ),
    recursive: bool = typer.Option(False, "--recursive", help="Look into subfolders."),
    labels: str | None = typer.Option(None, "--labels", help=LABELS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    merge_duplicates: bool = typer.Option(
        True,
        "--merge-duplicates/--no-merge-duplicates",
        help="Keep byte-identical images in the same split (they would leak otherwise).",
    ),
) -> None:
    """Make a deterministic, group-aware split (or k folds) of the paired samples."""
    from dataclasses import replace

    from abanet.data import splits as S
    from abanet.data.dedup import duplicate_sets
    from abanet.data.readers import open_dataset, paired
    from abanet.errors import AbanetError

    if out.exists() and not overwrite:
        raise AbanetError(f"{out}: file exists (pass --overwrite to replace it)")
    samples, _ = open_dataset(directory, kind, recursive=recursive, labels=_labels(labels))
    items = paired(samples)
    if not items:
        raise AbanetError(f"{directory}: no image/mask pairs to split")
    if len(items) < len(samples):
        typer.echo(f"note: {len(samples) - len(items)} images without masks are left out")
    groups = S.sample_groups(items, group_by)
    if merge_duplicates:
        dups = [[s.name for s in d] for d in duplicate_sets(items)]
        groups = S.merge_groups(groups, dups)
        if dups:
            typer.echo(f"note: {len(dups)} sets of identical images kept in one split")
    items = [replace(s, group=groups[s.name]) for s in items]
    rule = None  # the groups are now on the samples
    lists = {
        k: v
        for k, v in (("train", train_list), ("val", val_list), ("test", test_list))
        if v is not None
    }
    meta: dict[str, Any] = {"seed": seed, "group_by": group_by, "source": str(directory)}
    if kfold:
        result: Any = S.kfold_splits(items, k=kfold, seed=seed, group_by=rule)
        meta["kfold"] = kfold
        S.save_split(result, out, overwrite=overwrite, meta=meta)
        for i, f in enumerate(result):
            typer.echo(f"fold {i}: train {len(f['train'])}, val {len(f['val'])}")
    else:
        if lists:
            result, notes = S.split_from_lists(items, lists)
            for n in notes:
                typer.echo(f"warning: {n}")
            meta["lists"] = {k: str(v) for k, v in lists.items()}
        elif preset:
            if preset != "paper":
                raise AbanetError(f"unknown split preset {preset!r} (known: paper)")
            result = S.paper_split(items, seed=seed, group_by=rule)
            meta["preset"] = preset
        else:
            try:
                r = [float(x) for x in ratios.split(",")]
            except ValueError:
                msg = f"--ratios {ratios!r}: expected numbers like 0.8,0.1,0.1"
                raise AbanetError(msg) from None
            result = S.split_by_ratios(items, r, seed=seed, group_by=rule)
            meta["ratios"] = r
        S.save_split(result, out, overwrite=overwrite, meta=meta)
        counts = {k: (len(v), len({groups[n] for n in v})) for k, v in result.items()}
        for k, (n, g) in counts.items():
            typer.echo(f"{k}: {n} samples, {g} groups")
        shared = Counter(g for v in result.values() for g in {groups[n] for n in v})
        typer.echo(f"groups in more than one split: {sum(1 for c in shared.values() if c > 1)}")
    typer.echo(f"split written to {out}")


@data_app.command("convert-labelme")
def convert_labelme_cmd(
    src: Path = typer.Argument(..., help="Folder of LabelMe *.json files."),
    out: Path = typer.Argument(..., help="Output folder (gets images/ and masks/)."),
    labels: str | None = typer.Option(None, "--labels", help=LABELS_HELP),
    recursive: bool = typer.Option(False, "--recursive", help="Look into subfolders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
) -> None:
    """Rasterise LabelMe polygons into OUT/masks/*.png (0/255) next to OUT/images/."""
    from abanet.data.convert import convert_labelme

    written, problems = convert_labelme(
        src, out, labels=_labels(labels), recursive=recursive, overwrite=overwrite
    )
    for p in problems:
        typer.echo(f"{p.severity}: {p}", err=p.severity == "error")
    typer.echo(f"{written} pairs written to {out}")
    if any(p.severity == "error" for p in problems):
        raise typer.Exit(1)


@data_app.command("filter")
def filter_cmd(
    photos: list[Path] = typer.Argument(..., help="Photo files and folders (searched deeply)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder the kept photos go to."),
    min_mask_score: float | None = typer.Option(
        None,
        "--min-mask-score",
        min=0.0,
        max=1.0,
        help="A face is masked when its mask score (mean mask probability around the mouth) is "
        "at least this (default: the face pipeline's MIN_MASK_SCORE, 0.5).",
    ),
    link: str = typer.Option("copy", "--link", help="copy, hardlink or symlink kept photos."),
    report: Path | None = typer.Option(
        None, "--report", help="CSV report of every photo (default OUT/filter_report.csv)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start over: judge every photo again, replace files in OUT."
    ),
    model: str = typer.Option("default", "--model", "-m", help="Shipped name or weights path."),
    detector: str = typer.Option("default", help="Face detector."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    backend: str = typer.Option("auto", help="Inference backend."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Keep the photos that show at least one masked face; report why each other one was dropped.

    Kept photos land in OUT at their path relative to the input folder; existing files there
    are kept. A rerun resumes from the report.
    """
    from rich.console import Console

    from abanet.cli.main import EXIT_FAILED
    from abanet.cli.options import (
        check_choice,
        check_inference_options,
        check_out_dir,
        track_items,
    )
    from abanet.data.photo_filter import PLACE_MODES, filter_photos
    from abanet.faces.pipeline import MIN_MASK_SCORE
    from abanet.inference.segmenter import Segmenter

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    check_choice("--link", link, PLACE_MODES)
    check_inference_options(device, backend, detector)
    check_out_dir(out)
    segmenter = Segmenter(model, device=device, backend=backend, detector=detector)

    progress = track_items("filtering", quiet, console)

    summary = filter_photos(
        segmenter,
        photos,
        out,
        min_mask_score=MIN_MASK_SCORE if min_mask_score is None else min_mask_score,
        mode=link,
        overwrite=overwrite,
        report=report,
        progress=progress,
    )
    for problem in summary.problems:
        console.print(f"[yellow]{problem}[/yellow]")
    console.print(f"{summary.line()}; report {summary.report}, kept photos in {out}")
    if summary.problems:
        raise typer.Exit(EXIT_FAILED)


@data_app.command("dedup")
def dedup_cmd(
    folders: list[Path] = typer.Argument(
        ..., help="Folders (datasets or plain photo folders); the first one's copies are kept."
    ),
    max_distance: int = typer.Option(
        None,
        "--max-distance",
        min=0,
        max=64,
        help="Near duplicates: perceptual hashes at most this many bits (of 64) apart "
        "(default 6, measured in docs/data.md).",
    ),
    exact: bool = typer.Option(False, "--exact", help="Exact duplicates (same bytes) only."),
    move_to: Path | None = typer.Option(
        None, "--move-to", help="Move the duplicates (with their masks) into this folder."
    ),
    delete: bool = typer.Option(False, "--delete", help="Delete the duplicates (and masks)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the groups here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
    max_groups: int = typer.Option(30, "--max-groups", help="Groups to print."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Find exact and near-duplicate images within and across folders (train vs test leakage).

    A dry run unless --move-to or --delete is given. In each group the image in the earliest
    folder given is kept (then the largest, then the first by path).
    """
    from rich.console import Console

    from abanet.cli.main import EXIT_FAILED
    from abanet.cli.options import track_items
    from abanet.data.atomic import write_bytes_atomic
    from abanet.data.dedup import (
        MAX_DISTANCE,
        common_base,
        find_duplicates,
        move_duplicates,
        phash_distance,
        relative_to_base,
    )
    from abanet.errors import OutputExistsError, UsageError

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if move_to is not None and delete:
        raise UsageError("give one of --move-to DIR and --delete")
    if exact and max_distance is not None:
        raise UsageError("--exact finds byte-identical images only: drop --max-distance")
    if json_out is not None and json_out.exists() and not overwrite:
        raise OutputExistsError(f"{json_out}: file exists (pass --overwrite to replace it)")
    distance = -1 if exact else (MAX_DISTANCE if max_distance is None else max_distance)

    report = find_duplicates(folders, distance, track_items("hashing", quiet, console))
    base = common_base(report.folders)

    def rel(path: Path) -> str:
        return relative_to_base(path, base).as_posix()

    for p in report.problems:
        console.print(f"[yellow]{p}[/yellow]")
    groups = report.groups
    n_exact = sum(g.exact for g in groups)
    cross = report.cross_folder()
    console.print(
        f"{len(report.entries)} images in {len(folders)} folder(s): {len(groups)} groups of "
        f"duplicates ({n_exact} exact, {len(groups) - n_exact} near), "
        f"{len(report.duplicates)} duplicates to remove; {len(cross)} groups span folders"
    )
    for g in groups[:max_groups]:
        kind = "exact" if g.exact else f"near (distance <= {g.distance})"
        span = " [across folders]" if len(g.folders) > 1 else ""
        console.print(f"{kind}{span}: keep {rel(g.keep.image)}")
        for d in g.duplicates:
            how = (
                "same bytes"
                if d.sha1 == g.keep.sha1
                else f"d={phash_distance(d.phash, g.keep.phash)}"
            )
            console.print(f"    {rel(d.image)} ({how})")
    if len(groups) > max_groups:
        console.print(f"... {len(groups) - max_groups} more groups (see --json)")
    if json_out is not None:
        text = json.dumps(report.to_dict(base), indent=1, ensure_ascii=False) + "\n"
        write_bytes_atomic(json_out, text.encode("utf-8"), overwrite=overwrite)
        console.print(f"groups written to {json_out}")
    if move_to is None and not delete:
        if report.duplicates:
            console.print(
                "dry run: nothing moved (--move-to DIR moves the duplicates with their masks, "
                "--delete deletes them)"
            )
    elif report.duplicates:
        moved = move_duplicates(report, move_to, delete)
        for line in moved.skipped:
            console.print(f"[yellow]{line}[/yellow]")
        verb = "deleted" if delete else f"moved to {move_to}"
        console.print(f"{len(moved.moved)} duplicates ({moved.files} files) {verb}")
    if report.problems:
        raise typer.Exit(EXIT_FAILED)


@data_app.command("stats")
def stats(
    directory: Path = typer.Argument(..., help="Labelled dataset folder."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for stats.md and the PNGs (default DATASET-stats)."
    ),
    kind: str = typer.Option("auto", "--kind", help=KIND_HELP),
    faces: bool = typer.Option(
        True, "--faces/--no-faces", help="Count faces per photo with the face detector."
    ),
    detector: str = typer.Option("default", "--detector", help="Face detector (abanet predict's)."),
    types: Path | None = typer.Option(
        None, "--types", help="CSV image,type of mask types (default: from file-name prefixes)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier statistics."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Image sizes, faces per image, mask area, position, colours and types (paper Figs 3-4)."""
    from abanet.cli.options import check_inference_options, progress_bar
    from abanet.data.stats import check_stats_out, dataset_stats, write_stats

    if faces and kind != "mfsd":
        check_inference_options("cpu", "eager", detector)
    target = out if out is not None else Path(f"{directory.resolve().name}-stats")
    check_stats_out(target, overwrite)
    with progress_bar("describing", quiet) as progress:
        result = dataset_stats(
            directory, kind, faces=faces, detector=detector, types=types, progress=progress
        )
    files = write_stats(result, target, overwrite=overwrite)
    for note in result.notes:
        typer.secho(f"note: {note}", err=True, fg="yellow")
    typer.echo(f"{len(result.images)} labelled images described")
    for name, path in files.items():
        typer.echo(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-command group to the main app."""
    app.add_typer(data_app, name="data")
