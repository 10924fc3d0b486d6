"""``abanet models``: the registry as a table (parameters, GFLOPs at 256x256, weights)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(
    size: int = typer.Option(256, help="Square input side for the FLOP count."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List registered models with parameters, GFLOPs, encoder and available weights."""
    import json

    from rich.console import Console
    from rich.table import Table

    from abanet.models.summary import model_summaries

    rows = model_summaries(size)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"abanet models (GFLOPs at {size}x{size}; 1 MAC = 2 FLOPs)")
    for col in ("name", "params (M)", "GFLOPs", "encoder", "weights", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['params_m']:.2f}",
            "-" if r["gflops"] is None else f"{r['gflops']:.2f}",
            r["encoder"],
            r["weights"],
            r["description"],
        )
    Console(width=160).print(table)
