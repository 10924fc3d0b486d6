"""The ``abanet`` command. Each subcommand lives in its own module and registers itself here.

Exit codes, the same for every command: 0 done, 1 some inputs failed (the rest was done),
2 bad input or usage (nothing was done; one ``error:`` line says why), 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from abanet.errors import AbanetError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error_line(exc: BaseException) -> str:
    """One line for an error the user can act on."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror.lower()}"
    text = exc.format_message() if isinstance(exc, TyperException) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class AbanetGroup(TyperGroup):
    """Runs a subcommand and turns what the user got wrong into one line and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TyperException as exc:  # usage: unknown option, bad value, missing argument
            ctx_of = getattr(exc, "ctx", None)
            hint = f" (see '{ctx_of.command_path} --help')" if ctx_of is not None else ""
            typer.echo(f"error: {error_line(exc)}{hint}", err=True)
            raise typer.Exit(getattr(exc, "exit_code", EXIT_USAGE)) from None
        except (AbanetError, OSError) as exc:
            typer.echo(f"error: {error_line(exc)}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    name="abanet",
    help="Face-mask region segmentation: ABANet, baselines, training, evaluation, inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=AbanetGroup,
)

# Modules under abanet.cli that define ``register(app)``. Heavy imports stay inside commands.
_COMMAND_MODULES = [
    "models",
    "data",
    "train",
    "evaluate",
    "experiment",
    "plot",
    "predict",
    "serve",
    "benchmark",
    "export",
    "synth",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"abanet.cli.{_name}").register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``abanet`` with ``argv`` (default: the process's arguments); returns the exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="abanet")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
