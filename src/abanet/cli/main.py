"""The ``abanet`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="abanet",
    help="Face-mask region segmentation: ABANet, baselines, training, evaluation, inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules under abanet.cli that define ``register(app)``. Heavy imports stay inside commands.
_COMMAND_MODULES = [
    "models",
    "data",
    "train",
    "evaluate",
    "experiment",
    "predict",
    "serve",
    "benchmark",
    "export",
    "synth",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"abanet.cli.{_name}").register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
