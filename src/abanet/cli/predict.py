"""``abanet predict``: segment face-mask regions in files, folders and globs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from abanet.inference.backends.registry import backend_help


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    inputs: list[str] = typer.Argument(
        None, help="Images, folders (recursive), globs, video files, or - (stdin to stdout)."
    ),
    out: Path = typer.Option(Path("abanet-out"), "-o", "--out", help="Output folder."),
    samples: bool = typer.Option(False, "--samples", help="Also segment the shipped samples."),
    model: str = typer.Option("default", "--model", "-m", help="Shipped name or weights path."),
    threshold: float = typer.Option(
        None, min=0.0, max=1.0, help="Probability threshold (default: the model's)."
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda (cuda fails when absent)."),
    backend: str = typer.Option("auto", help=backend_help("auto")),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Crops per forward pass."),
    detector: str = typer.Option("default", help="Face detector for full photos."),
    whole_image: bool = typer.Option(False, "--whole-image", help="Never look for faces."),
    soft: bool = typer.Option(False, "--soft", help="Write probabilities as 8-bit grey."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <stem>_overlay.jpg."),
    cutout: bool = typer.Option(False, "--cutout", help="Also write <stem>_cutout.png (RGBA)."),
    json_out: bool = typer.Option(False, "--json", help="Also write <stem>.json (faces)."),
    labelme: bool = typer.Option(
        False, "--labelme", help="Also write <stem>.json for LabelMe (polygons labelled mask)."
    ),
    coco: Path = typer.Option(
        None, "--coco", help="Also write one COCO instances file (RLE) of all masks here."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    frames: bool = typer.Option(False, "--frames", help="Videos: per-frame PNGs, not MP4s."),
    camera: int = typer.Option(None, "--camera", min=0, help="Segment webcam N until Ctrl-C."),
    detect_every: int = typer.Option(
        5, "--detect-every", min=1, help="Videos: detect faces every N frames (track between)."
    ),
    flip_tta: bool | None = typer.Option(
        None, "--tta/--no-tta", help="Average with the mirrored image (default: the model's)."
    ),
    fill_holes: bool | None = typer.Option(
        None, "--fill-holes/--no-fill-holes", help="Fill mask holes (default: the model's)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    profile: bool = typer.Option(
        False, "--profile", help="Print where the time went (decode, detect, model, encode...)."
    ),
    manifest: str = typer.Option(
        None, "--manifest", help="Also the files or URIs a list names (text lines or Parquet)."
    ),
    results: Path = typer.Option(
        None,
        "--results",
        help="Write a JSONL line per input: status ok/skipped/error, message, outputs "
        "(replaced each run; --engine ray: default OUT/results.jsonl).",
    ),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray."),
    workers: int = typer.Option(
        None, "--workers", min=1, help="Ray: model actors (default: as many as CPUs/GPUs allow)."
    ),
    cpus_per_worker: float = typer.Option(
        1.0, "--cpus-per-worker", min=0.0, help="Ray: CPUs (torch threads) per actor."
    ),
    gpus_per_worker: float = typer.Option(
        0.0, "--num-gpus-per-worker", min=0.0, help="Ray: GPUs per actor (0: CPU actors)."
    ),
    address: str = typer.Option(
        None, "--address", help="Ray: cluster to join (auto, HOST:6379); default: a local Ray."
    ),
) -> None:
    """Write OUT/<stem>.png: a 0/255 mask of the face-mask region at each input's size."""
    from rich.console import Console

    from abanet.cli.main import EXIT_FAILED, EXIT_INTERRUPTED
    from abanet.cli.options import (
        check_choice,
        check_inference_options,
        check_out_dir,
        track_items,
    )
    from abanet.errors import UsageError
    from abanet.inference.predict import read_manifest
    from abanet.inference.segmenter import Segmenter, default_samples_dir
    from abanet.inference.video import is_video_file

    console = Console(stderr=True, soft_wrap=True)
    paths = list(inputs or [])
    if samples:
        paths.append(str(default_samples_dir()))
    if not paths and camera is None and manifest is None:
        raise UsageError(
            "give at least one image, folder, glob or video (or --manifest, --samples, --camera)"
        )
    extra_outputs = overlay or cutout or json_out or labelme or coco is not None or frames
    if "-" in paths and (len(paths) > 1 or camera is not None or extra_outputs):
        raise UsageError("- reads one image from stdin and writes its mask PNG to stdout only")
    check_choice("--engine", engine, ["local", "ray"])
    device_type = None
    if engine == "ray":
        from abanet.inference.ray_engine import actor_device, import_ray

        if "-" in paths or camera is not None or any(map(is_video_file, paths)) or profile:
            raise UsageError(
                "--engine ray segments image files: run videos, --camera, - and --profile on "
                "the local engine"
            )
        import_ray()
        device_type = actor_device(device, gpus_per_worker).split(":")[0]
    elif workers is not None or address is not None or gpus_per_worker or cpus_per_worker != 1:
        raise UsageError(
            "--workers, --cpus-per-worker, --num-gpus-per-worker and --address are options "
            "of --engine ray"
        )
    check_inference_options(device, backend, None if whole_image else detector, device_type)
    check_out_dir(out)
    if coco is not None and soft:
        raise UsageError("--coco needs 0/255 masks: drop --soft")
    entries = read_manifest(manifest) if manifest is not None else []
    session = {
        "model": model,
        "device": device,
        "backend": backend,
        "threshold": threshold,
        "detector": None if whole_image else detector,
        "batch_size": batch_size,
        "flip_tta": flip_tta,
        "fill_holes": fill_holes,
    }
    # the ray engine's actors build their own sessions; this one checks the model loads
    segmenter = Segmenter(**(session | {"device": "cpu"} if engine == "ray" else session))

    if paths == ["-"]:
        predict_stdin(segmenter, soft, whole_image)
        return
    videos = [Path(p) for p in paths if is_video_file(p) and Path(p).is_file()]
    paths = [p for p in paths if not (is_video_file(p) and Path(p).is_file())]
    streams_failed = False
    if videos or camera is not None:
        streams = {"overlay": overlay, "frames": frames, "overwrite": overwrite}
        streams |= {"detect_every": detect_every, "whole_image": whole_image}
        done = predict_streams(segmenter, videos, camera, out, console, quiet, **streams)
        streams_failed = any(msg for _, _, msg in done)
        if camera is None and any(s and s.interrupted for _, s, _ in done):
            raise typer.Exit(EXIT_INTERRUPTED)
        if not paths and not entries:
            if streams_failed:
                raise typer.Exit(EXIT_FAILED)
            return

    progress = track_items("segmenting", quiet, console)

    extras = ("overlay", "cutout", "json", "labelme")  # the flags of OUTPUT_WRITERS' kinds
    flags = (overlay, cutout, json_out, labelme)
    options = {
        "soft": soft,
        "extras": [k for k, on in zip(extras, flags, strict=True) if on],
        "whole_image": whole_image,
        "overwrite": overwrite,
        "progress": progress,
        "report": lambda msg: console.print(f"[yellow]{msg}[/yellow]", highlight=False),
    }
    if results is None and engine == "ray":
        results = out / "results.jsonl"
    with contextlib.ExitStack() as stack:
        if results is not None:
            from abanet.inference.predict import ResultsManifest

            options["on_result"] = stack.enter_context(ResultsManifest(results)).add
        if engine == "ray":
            from abanet.inference.ray_engine import RayOptions

            cluster = RayOptions(workers, cpus_per_worker, gpus_per_worker, address)
            summary = predict_with_ray(session, paths, entries, out, cluster, options)
            backend_name = f"{backend} (Ray actors)"
        else:
            from abanet.inference.predict import predict_files

            summary = predict_files(segmenter, paths, out, manifest=entries, **options)
            backend_name = getattr(segmenter.backend, "name", backend)
    console.print(
        f"{len(summary.written)} written to {out}, {len(summary.skipped_existing)} skipped "
        f"(exist), {len(summary.failed)} failed; {summary.faces} faces "
        f"({summary.masked_faces} masked), {len(summary.no_face)} images with no face; model "
        f"{segmenter.model.config.name}, backend {backend_name}"
        + (f"; results in {results}" if results is not None else ""),
        highlight=False,
    )
    if profile and summary.profile:
        from abanet.inference.profiling import profile_table

        console.print(profile_table(summary.profile), highlight=False, markup=False)
    if coco is not None and not summary.interrupted and summary.masks:
        from abanet.data.labelme_export import write_coco
        from abanet.errors import OutputExistsError

        try:
            write_coco(summary.masks, coco, overwrite)
            console.print(f"{coco}: COCO instances of {len(summary.masks)} images", highlight=False)
        except OutputExistsError:
            console.print(f"[yellow]{coco}: exists, skipped (use --overwrite to replace)[/yellow]")
    if summary.interrupted:
        console.print("interrupted: rerun the same command to do the rest", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed or streams_failed:
        raise typer.Exit(EXIT_FAILED)


def predict_with_ray(
    session: dict[str, Any],
    paths: list[str],
    entries: list[str],
    out: Path,
    cluster: Any,
    options: dict[str, Any],
) -> Any:
    """``--engine ray``: gather the inputs here, segment them on Ray actors."""
    from abanet.inference.predict import gather_jobs
    from abanet.inference.ray_engine import predict_ray

    jobs, summary = gather_jobs(paths, out, entries, options["report"], options.get("on_result"))
    return predict_ray(session, jobs, out, ray_options=cluster, summary=summary, **options)


def predict_stdin(segmenter: Any, soft: bool, whole_image: bool) -> None:
    """``abanet predict -``: one encoded image from stdin, its mask PNG to stdout."""
    import sys

    from abanet.data.io import read_image_bytes
    from abanet.inference.predict import OUTPUT_WRITERS

    image = read_image_bytes(sys.stdin.buffer.read(), "<stdin>")
    result = segmenter.segment(image, whole_image=whole_image)
    sys.stdout.buffer.write(OUTPUT_WRITERS["mask"].encode(image, result, "<stdin>", soft))
    sys.stdout.buffer.flush()


def predict_streams(
    segmenter: Any,
    videos: list[Path],
    camera: int | None,
    out: Path,
    console: Any,
    quiet: bool,
    **options: Any,
) -> list[tuple[Path, Any, str | None]]:
    """Video files, then the webcam (``--camera``): segment, write, print one line each."""
    from rich.progress import Progress

    from abanet.inference.video import (
        live_window,
        open_camera,
        predict_videos,
        segment_stream,
        video_outputs,
    )

    overlay, frames = options.pop("overlay"), options.pop("frames")
    with Progress(console=console, disable=quiet, transient=True) as bar:

        def progress(name: str, total: int):
            task = bar.add_task(f"segmenting {name}", total=total or None)
            return lambda n: bar.update(task, completed=n)

        done = predict_videos(
            segmenter,
            videos,
            out,
            overlay=overlay,
            frames=frames,
            progress=progress,
            report=lambda msg: console.print(f"[yellow]{msg}[/yellow]", highlight=False),
            **options,
        )
        if camera is not None and not any(s and s.interrupted for _, s, _ in done):
            source = open_camera(camera)
            show = live_window(f"abanet: camera {camera} (q or Ctrl-C stops)")
            paths = video_outputs(out, Path(f"camera{camera}"), overlay, frames)
            console.print(
                f"camera {camera}: {source.width}x{source.height} at {float(source.rate):.1f} "
                f"frames/s -> {', '.join(str(p) for p in paths.values())}"
                + ("" if show else " (no window: this OpenCV has no GUI)")
                + "; Ctrl-C stops",
                highlight=False,
            )
            summary = segment_stream(
                segmenter,
                source,
                paths,
                overlay=overlay,
                show=show,
                progress=progress(source.name, 0),
                **options,
            )
            done.append((Path(source.name), summary, None))
    for path, summary, _ in done:
        if summary is not None:
            console.print(
                f"{path}: {summary.frames} frames, {summary.fps:.1f} frames/s, face detection on "
                f"{summary.detections}, masks in {summary.masked_frames} -> "
                f"{', '.join(str(p) for p in summary.written[:2])}"
                + (" (stopped)" if summary.interrupted else ""),
                highlight=False,
            )
    return done
