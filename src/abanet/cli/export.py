"""``abanet export``: write a model as ONNX (dynamic batch/height/width) and check it."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    model: str = typer.Argument(..., help="Registry name (random weights), shipped name or path."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="Output format (onnx)."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write."),
    size: int = typer.Option(None, help="Tracing size (default: the model's input_size)."),
    opset: int = typer.Option(17, min=9, help="ONNX opset version."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing FILE."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Compare ONNX Runtime with PyTorch at two shapes."
    ),
) -> None:
    """Export MODEL to FILE; batch, height and width stay dynamic in the graph."""
    import os

    from abanet.errors import ExportError, OutputExistsError, UsageError
    from abanet.inference.export import check_shapes, export_onnx, verify_onnx
    from abanet.models.hub import resolve_model

    if fmt.lower() != "onnx":
        raise UsageError(f"unsupported format {fmt!r} (supported: onnx)")
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: file exists; pass --overwrite to replace it")
    net, _, source = resolve_model(model, "cpu", random_weights=True)
    cfg = net.config
    size = int(size or cfg.input_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    from abanet.data.atomic import atomic_temp

    fd, tmp_name = atomic_temp(output, suffix=".onnx")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export_onnx(net, tmp, size=size, opset=opset, overwrite=True)
        if verify:
            checks = verify_onnx(net, tmp, check_shapes(size, cfg.size_divisor))
            typer.echo("check against PyTorch (ONNX Runtime CPU):")
            for check in checks:
                typer.echo("  " + check.line())
            if not all(c.ok for c in checks):
                raise ExportError(f"{output}: ONNX outputs do not match PyTorch; not written")
        if output.exists() and not overwrite:
            raise ExportError(f"{output}: file exists; pass --overwrite to replace it")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    mb = output.stat().st_size / 1e6
    typer.echo(
        f"wrote {output} ({mb:.1f} MB): {cfg.name} ({source}), opset {opset}, input 'input' "
        f"(batch, 3, height, width) float32 normalised with mean {tuple(cfg.mean)} std "
        f"{tuple(cfg.std)}, output 'logits' (batch, 1, height, width); height and width must be "
        f"multiples of {cfg.size_divisor}"
    )
