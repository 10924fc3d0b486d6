"""``abanet train``: train a model from a YAML config plus ``key=value`` overrides."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        context_settings={"allow_extra_args": False},
        epilog="Every key and its default: abanet train --print-config",
    )(train)


def train(
    overrides: list[str] = typer.Argument(
        None,
        help="Dotted overrides, e.g. model.name=abanet_lite optim.lr=1e-3 trainer.max_epochs=3",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="Run config (YAML)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (same as out=DIR)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its checkpoints/last.ckpt."
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config and exit."
    ),
) -> None:
    """Train a segmentation model (Lightning): checkpoints, logs and the best model in the run."""
    import shlex
    import sys

    from abanet.engine.config import dump_yaml, resolve_config
    from abanet.errors import AbanetError

    items = list(overrides or [])
    if out is not None:
        items.append(f"out={out}")
    if print_config:
        typer.echo(dump_yaml(resolve_config(config, items)), nl=False)
        return
    from abanet.engine.training import train as run_training

    if resume and config is None and out is None:
        raise AbanetError("--resume needs the run folder: pass --out RUN")
    result = run_training(
        config, items, resume=resume, command=shlex.join(["abanet", *sys.argv[1:]])
    )
    if result.global_rank:  # distributed training: process 0 reports
        return
    best = f"{result.best_score:.4f}" if result.best_score is not None else "n/a"
    typer.echo(f"run: {result.run_dir}")
    typer.echo(f"steps: {result.global_step}, epochs: {result.epochs}, {result.seconds:.0f} s")
    typer.echo(f"best val IoU: {best} ({result.best_checkpoint})")
    if result.model_dir:
        typer.echo(f"model: {result.model_dir}")
