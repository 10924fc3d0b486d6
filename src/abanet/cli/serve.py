"""``abanet serve``: the HTTP service and its web page."""

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
    token: str = typer.Option(
        None, envvar="ABANET_TOKEN", help="Bearer token required by all but /health and /."
    ),
    cors_origin: list[str] = typer.Option(
        None, "--cors-origin", help="Origin allowed to call the API from a web page (repeat)."
    ),
    max_upload_mb: float = typer.Option(32.0, min=0.001, help="Request body limit, MiB."),
    max_pixels: int = typer.Option(40_000_000, min=1, help="Image pixel limit (from header)."),
    max_queue: int = typer.Option(8, min=1, help="Prediction requests admitted at once."),
) -> None:
    """Serve the web page (GET /), POST /predict (PNG mask), /predict/json and the other outputs."""
    from abanet.cli.options import check_inference_options

    check_inference_options(device, backend, detector)
    import uvicorn

    from abanet.inference.segmenter import Segmenter
    from abanet.service.app import create_app
    from abanet.service.guard import Limits

    segmenter = Segmenter(model, device=device, backend=backend, detector=detector)
    _ = segmenter.backend, segmenter.detector  # build (and calibrate) before the first request
    limits = Limits(round(max_upload_mb * 1024 * 1024), max_pixels, max_queue)
    app = create_app(segmenter, limits, token=token, cors_origins=cors_origin or ())
    uvicorn.run(app, host=host, port=port, log_level="info")
