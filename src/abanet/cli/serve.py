"""``abanet serve``: the HTTP service."""

from __future__ import annotations

import typer

from abanet.inference.backends.registry import backend_help


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = typer.Option("default", "--model", "-m", help="Shipped name or weights path."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    backend: str = typer.Option("auto", help=backend_help("auto")),
    detector: str = typer.Option("default", help="Face detector for full photos."),
) -> None:
    """Serve POST /predict (PNG mask) and /predict/json over HTTP."""
    from abanet.cli.options import check_inference_options

    check_inference_options(device, backend, detector)
    import uvicorn

    from abanet.inference.segmenter import Segmenter
    from abanet.service.app import create_app

    segmenter = Segmenter(model, device=device, backend=backend, detector=detector)
    uvicorn.run(create_app(segmenter), host=host, port=port, log_level="info")
