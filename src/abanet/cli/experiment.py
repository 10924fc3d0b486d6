"""``abanet experiment``: re-run one of the paper's tables (training + evaluation runs)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment)


def experiment(
    preset: str = typer.Argument(
        ...,
        help="table2, table4, table5, table6, table7, table8, table9, figure7 (or a YAML file).",
    ),
    data: Path = typer.Option(
        ..., "--data", "-d", help="Labelled dataset folder (split per trial)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Experiment folder (default runs/experiments/PRESET-SCALE)."
    ),
    scale: str = typer.Option(
        "smoke",
        "--scale",
        help="smoke (pipeline check), medium (a real ranking on a CPU in ~1 h) or full (paper).",
    ),
    trials: int | None = typer.Option(
        None, "--trials", help="Trials per row (new seed and split)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of trial 0 (trial k uses seed + k)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Config override for every run, e.g. --set trainer.max_epochs=50."
    ),
    substitute: bool = typer.Option(
        True,
        "--substitute/--no-substitute",
        help="At smoke/medium scale, run abanet_lite in place of abanet_r34/basnet_r34.",
    ),
    device: str = typer.Option("auto", "--device", help="Evaluation device (auto, cpu, cuda)."),
    list_only: bool = typer.Option(False, "--list", help="List the runs and exit."),
    keep_checkpoints: bool = typer.Option(
        False,
        "--keep-checkpoints",
        help="Keep each trial's Lightning checkpoints (deleted once its model is exported).",
    ),
) -> None:
    """Train and evaluate every row of a paper table; write table.md beside the paper's numbers.

    A row that fails is recorded and the others run; the exit status is then 1 and the last line
    says how many rows failed. Running the command again skips finished trials and retries the
    failed ones.
    """
    from abanet.engine.experiments import load_preset, run_experiment

    if list_only:
        from abanet.engine.experiments import run_config, slug

        spec = load_preset(preset, scale)
        typer.echo(f"{spec.title} ({scale}, {trials or spec.trials} trial(s) per row)")
        for r in spec.runs:
            c = run_config(
                spec,
                r,
                str(data),
                scale,
                0,
                Path(out or ".") / slug(r.label),
                overrides,
                substitute,
                seed,
            )
            m, lo, o = c["model"], c["loss"], c["optim"]
            typer.echo(
                f"  {r.label}: {m['name']} {m['kwargs'] or ''} input {c['input_size']}, "
                f"loss {lo['spec']} (alpha {lo['focal_alpha']}), {o['name']} lr {o['lr']}"
            )
        return
    res = run_experiment(
        preset,
        data,
        out,
        scale=scale,
        trials=trials,
        overrides=overrides,
        substitute=substitute,
        seed=seed,
        device=device,
        log=typer.echo,
        keep_checkpoints=keep_checkpoints,
    )
    typer.echo(f"{res.trained} trained, {res.skipped} reused")
    typer.echo(res.table.read_text())
    if res.failed:
        from abanet.cli.main import EXIT_FAILED

        typer.echo(
            f"error: {len(res.failed)} of {len(res.rows)} rows failed ({', '.join(res.failed)}); "
            f"the errors are in {res.out_dir / 'results.json'}, tracebacks in each trial's "
            "error.log; run the same command again to retry them",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)
