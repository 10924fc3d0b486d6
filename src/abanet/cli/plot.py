"""``abanet plot``: training curves of a run folder (or of every run in an experiment folder)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("plot")(plot)


def plot(
    run: Path = typer.Argument(..., help="Run folder (RUN/csv/...) or a folder of runs."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="PNG to write (default RUN/curves.png)."
    ),
    x: str = typer.Option("step", "--x", help="Abscissa: step or epoch."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
) -> None:
    """Plot loss, validation metrics and learning rate from a run's logs as a PNG."""
    from abanet.cli.options import check_choice
    from abanet.plots.curves import plot_runs

    check_choice("--x", x, ("step", "epoch"))
    path, logs = plot_runs(run, out, x=x, overwrite=overwrite)
    for log in logs:
        best = log.best()
        score = f"best val IoU {best[1]:.4f} at {log.x} {best[0]:g}" if best else "no validation"
        typer.echo(f"{log.label}: {len(log.get('train/loss_step').y)} loss points, {score}")
    typer.echo(f"curves: {path}")
