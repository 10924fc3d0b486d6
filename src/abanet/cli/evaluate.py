"""``abanet evaluate``: score a model on a labelled dataset with the paper's protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from abanet.inference.backends.registry import backend_help


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    model: str = typer.Option(
        ..., "--model", "-m", help="Shipped name, model folder or .safetensors (LABEL=MODEL)."
    ),
    data: Path = typer.Option(..., "--data", "-d", help="Labelled dataset folder."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for per_image.csv, summary.json/.md."
    ),
    size: int | None = typer.Option(None, "--size", help="Input size (default: the model's)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Images per forward pass."),
    split: Path | None = typer.Option(None, "--split", help="Split JSON; evaluate one subset."),
    subset: str = typer.Option("test", "--subset", help="Subset of --split to evaluate."),
    kind: str = typer.Option(
        "auto", "--kind", help="Dataset layout (auto, folders, mfsd, labelme)."
    ),
    compare: Path | None = typer.Option(
        None, "--compare", help="Per-image baselines CSV (model,encoder,image,iou,...)."
    ),
    grid: Path | None = typer.Option(None, "--grid", help="Write a PNG of example rows."),
    grid_worst: int | None = typer.Option(
        None, "--grid-worst", help="Show the N worst images by IoU in --grid."
    ),
    grid_rows: int = typer.Option(8, "--grid-rows", help="Rows in --grid (without --grid-worst)."),
    compare_grid: Path | None = typer.Option(
        None,
        "--compare-grid",
        help="Write a PNG of the --grid crops with each model's error map (this model and each "
        "--grid-model) side by side.",
    ),
    grid_models: list[str] = typer.Option(
        [],
        "--grid-model",
        help="Another model for --compare-grid: name, folder or file, optionally LABEL=MODEL.",
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Default: the model's."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    backend: str = typer.Option("eager", "--backend", help=backend_help("eager")),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    no_structure: bool = typer.Option(
        False, "--no-structure", help="Skip F-beta, S-measure, E-measure (faster)."
    ),
    flip_tta: bool | None = typer.Option(
        None, "--tta/--no-tta", help="Average with the mirrored image (default: the model's)."
    ),
    fill_holes: bool | None = typer.Option(
        None, "--fill-holes/--no-fill-holes", help="Fill mask holes (default: the model's)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier evaluation."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Per-image metrics (then the mean over images) of MODEL on DATA, written to OUT."""
    from abanet.cli.options import check_inference_options, progress_bar
    from abanet.engine.evaluation import evaluate as run_eval
    from abanet.errors import UsageError

    check_inference_options(device, backend, None)
    if compare_grid is not None and not grid_models:
        raise UsageError("--compare-grid needs at least one --grid-model to compare with")
    if grid_models and compare_grid is None:
        raise UsageError("--grid-model is only used by --compare-grid: give --compare-grid FILE")
    others = [model_label(m) for m in grid_models]
    label, model_spec = model_label(model)

    with progress_bar("evaluating", quiet) as progress:
        res = run_eval(
            model_spec,
            data,
            out,
            size=size,
            batch_size=batch_size,
            split=split,
            subset=subset,
            kind=kind,
            compare=compare,
            grid=grid,
            grid_worst=grid_worst,
            grid_rows=grid_rows,
            threshold=threshold,
            structure=not no_structure,
            device=device,
            backend=backend,
            num_workers=workers,
            flip_tta=flip_tta,
            fill_holes=fill_holes,
            overwrite=overwrite,
            compare_grid=compare_grid,
            grid_models=others,
            label=label,
            progress=progress,
        )
    m = res.metrics
    s = res.summary
    for note in s["warnings"]:
        typer.secho(f"warning: {note}", err=True, fg="yellow")
    typer.echo(f"{s['images']} images, {s['fps']:.1f} images/s on {s['device']}")
    keys = ["iou", "f1", "precision", "recall", "accuracy", "mae", "fbeta_adaptive", "smeasure"]
    typer.echo("  ".join(f"{k} {m[k]:.4f}" for k in keys if k in m))
    if res.compare is not None:
        info = s["compare"]
        typer.echo(
            f"compare: {info['baseline_groups']} baselines, {info['matched_by_all']} of "
            f"{info['our_images']} images matched by all"
        )
    for name, path in res.files.items():
        typer.echo(f"{name}: {path}")


def model_label(spec: str) -> tuple[str, str]:
    """``(label, model)`` of a model argument: ``LABEL=MODEL``, else a short name for it (a run's
    folder name for ``RUN/model``, a file's stem, a shipped name as it is)."""
    if "=" in spec:
        name, _, model = spec.partition("=")
        if name and model:
            return name, model
    path = Path(spec)
    if path.name == "model" and path.parent.name:
        return path.parent.name, spec
    return (path.stem if path.suffix else path.name) or spec, spec
