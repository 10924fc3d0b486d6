"""``abanet benchmark``: inference speed and memory of a model with a given backend."""

from __future__ import annotations

from pathlib import Path

import typer

from abanet.inference.backends.registry import backend_help


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark)


def benchmark(
    model: str = typer.Option(
        "abanet_lite", "--model", "-m", help="Registry name (random weights) or a weights path."
    ),
    size: int = typer.Option(None, help="Square input side (default: the model's input_size)."),
    batch: int = typer.Option(1, min=1, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="cpu or cuda (cuda fails when absent)."),
    backend: str = typer.Option("eager", help=backend_help("eager")),
    iters: int = typer.Option(10, min=1, help="Timed batches (the median counts)."),
    warmup: int = typer.Option(2, min=0, help="Untimed batches first."),
    vs_naive: bool = typer.Option(
        False, "--vs-naive", help="Also time the naive reference (eager fp32 batch 1) in this run."
    ),
    threads: int = typer.Option(None, min=1, help="CPU threads (default: every core)."),
    agreement: Path = typer.Option(
        None,
        "--agreement",
        help="Labelled dataset: also compare the backend's masks with fp32 eager's on it "
        "(pixel agreement, mean IoU of both).",
    ),
    calibration: Path = typer.Option(
        None,
        "--calibration",
        help="onnxruntime_int8: folder of face crops to calibrate on (a dataset root's images/ "
        "is used); default $ABANET_INT8_CALIBRATION.",
    ),
    calibration_count: int = typer.Option(
        32, "--calibration-count", min=1, help="onnxruntime_int8: calibration images."
    ),
    calibration_method: str = typer.Option(
        "minmax", "--calibration-method", help="onnxruntime_int8: minmax, percentile, entropy."
    ),
    keep_float: str = typer.Option(
        "",
        "--keep-float",
        help="onnxruntime_int8: comma-separated node names, or first-conv / last-conv, to keep "
        "in float.",
    ),
    json_file: Path = typer.Option(None, "--json", help="Write the result as one JSON object."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """Images/s, ms/image (median after warm-up) and peak memory of one backend."""
    import json

    from abanet.cli.options import check_inference_options
    from abanet.errors import OutputExistsError, UsageError
    from abanet.inference.benchmark import format_result, run_benchmark

    check_inference_options(device, backend, None)
    options = {}
    if backend == "onnxruntime_int8":
        options = {
            "calibration": calibration,
            "count": calibration_count,
            "method": calibration_method,
            "exclude": tuple(k for k in keep_float.split(",") if k),
        }
    elif calibration is not None or keep_float:
        raise UsageError("--calibration and --keep-float apply to --backend onnxruntime_int8 only")
    if json_file is not None and json_file.exists() and not overwrite:
        raise OutputExistsError(f"{json_file}: file exists; pass --overwrite to replace it")
    result = run_benchmark(
        model,
        size=size,
        batch=batch,
        device=device,
        backend=backend,
        iters=iters,
        warmup=warmup,
        vs_naive=vs_naive,
        num_threads=threads,
        backend_options=options,
        agreement=agreement,
        log=lambda msg: typer.echo(msg, err=True),
    )
    typer.echo(format_result(result))
    if json_file is not None:
        from abanet.data.atomic import write_bytes_atomic

        text = json.dumps(result, indent=2, default=str) + "\n"
        write_bytes_atomic(json_file, text.encode(), overwrite=True)  # existence checked above
        typer.echo(f"wrote {json_file}")
