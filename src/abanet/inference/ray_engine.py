"""``abanet predict --engine ray``: the local predict pipeline, distributed by Ray Data.

The driver lists the inputs with :func:`~abanet.inference.predict.gather_jobs` (the same files,
output names and problems as the local engine; manifest entries may be URIs). Ray Data cuts the
list into batches and ``map_batches`` hands them to a pool of actors, each holding one
:class:`~abanet.inference.segmenter.Segmenter` (one model session, on the CPUs or the GPU Ray
gives the actor) that runs :func:`~abanet.inference.predict.predict_jobs` on its batch: the
local engine's per-image code (read, detect, segment, paste back, write atomically, skip outputs
that exist). Ray only distributes. Each actor returns one
:class:`~abanet.inference.predict.InputResult` row per input; the driver counts the rows as
they arrive and passes them on (the results manifest).

Embedded: without ``address`` a local Ray is started for the run (and stopped after); with
``address`` (``auto`` or ``HOST:6379``) the run joins a cluster started with ``ray start``.
Outputs are written by the actors, so on a cluster ``out`` (and local inputs) must be on a file
system every node mounts at the same path; remote inputs can be URIs that fsspec reads.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abanet.errors import DistributedError
from abanet.inference.predict import (
    InputResult,
    PredictJob,
    PredictSummary,
    as_source,
    predict_jobs,
    take_result,
)

#: how to get Ray (the ``ray`` extra)
RAY_INSTALL = "pip install 'abanet[ray]'"
#: most images one actor call takes (a call's pipeline drains at its end)
MAX_BATCH = 32
RESULT_FIELDS = [f.name for f in dataclasses.fields(InputResult)]


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`DistributedError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise DistributedError(
            f"--engine ray needs Ray, which is not installed here ({RAY_INSTALL})"
        ) from None
    return ray


@dataclass
class RayOptions:
    """Where and how wide to run: ``workers`` actors (default: as many as the cluster's CPUs,
    or GPUs with ``gpus_per_worker``, allow), each with ``cpus_per_worker`` CPUs (its torch
    threads) and ``gpus_per_worker`` GPUs; ``address`` of a running cluster (default: an
    embedded local Ray, ``num_cpus`` CPUs, default all)."""

    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None
    num_cpus: int | None = None


def actor_device(device: str, gpus_per_worker: float) -> str:
    """The device actors run on: ``cuda`` when they hold a GPU, else ``cpu`` (``auto``)."""
    wanted = "cuda" if gpus_per_worker > 0 else "cpu"
    if device not in ("auto", wanted) and not device.startswith(wanted):
        raise DistributedError(
            f"--device {device} with --num-gpus-per-worker {gpus_per_worker:g}: actors with a GPU "
            "run on cuda, actors without one on cpu"
        )
    return wanted if device == "auto" else device


class PredictActor:
    """One Ray actor: one Segmenter; each call runs ``predict_jobs`` on a batch of rows
    (``path``, ``stem``) and returns one :class:`InputResult` row per input."""

    def __init__(
        self, segmenter_options: dict[str, Any], out: str, cwd: str, options: dict[str, Any]
    ) -> None:
        from abanet.inference.segmenter import Segmenter

        if os.path.isdir(cwd):  # relative inputs and outputs mean what they mean to the driver
            os.chdir(cwd)
        self.segmenter = Segmenter(**segmenter_options)
        self.out = Path(out)
        self.options = options

    def run(self, jobs: list[PredictJob], rows: list[InputResult]) -> None:
        threads = max(2, self.segmenter.num_threads or 1)  # decode/encode beside the model
        predict_jobs(
            self.segmenter,
            jobs,
            self.out,
            report=lambda line: None,
            on_result=rows.append,
            workers=threads,
            **self.options,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        jobs = [
            PredictJob(as_source(p), Path(s))
            for p, s in zip(batch["path"], batch["stem"], strict=True)
        ]
        rows: list[InputResult] = []
        try:
            self.run(jobs, rows)
        except Exception:  # an unforeseen failure must not fail the whole run:
            seen = {r.path for r in rows}  # the inputs not done yet are retried one by one
            for job in jobs:
                if str(job.path) in seen:
                    continue
                try:
                    self.run([job], rows)
                except Exception as exc:  # that input gets an error row
                    message = f"{job.path}: {type(exc).__name__}: {exc}".splitlines()[0]
                    rows.append(InputResult(str(job.path), job.stem.as_posix(), "error", message))
        return {name: [getattr(r, name) for r in rows] for name in RESULT_FIELDS}


def start_ray(options: RayOptions) -> bool:
    """Connect to ``options.address`` or start an embedded local Ray; False when a Ray session
    was already running in this process (it is used as it is, and left running)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    kwargs["logging_level"] = logging.ERROR  # Ray's notices would drown the run's own lines
    if options.address is None:
        kwargs["num_cpus"] = options.num_cpus
    try:
        ray.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a local Ray"
        raise DistributedError(f"cannot start or reach {where}: {first_line(exc)}") from exc
    return True


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def default_workers(options: RayOptions, resources: dict[str, float]) -> int:
    """As many actors as the cluster's GPUs (with ``gpus_per_worker``) or CPUs allow."""
    if options.gpus_per_worker > 0:
        return max(1, int(resources.get("GPU", 0) // options.gpus_per_worker))
    return max(1, int(resources.get("CPU", 1) // max(options.cpus_per_worker, 1e-3)))


def check_fits(workers: int, options: RayOptions, resources: dict[str, float]) -> None:
    """The local Ray has the CPUs and GPUs the actors ask for (else Ray would wait forever)."""
    for kind, each in (("CPU", options.cpus_per_worker), ("GPU", options.gpus_per_worker)):
        have = resources.get(kind, 0.0)
        if workers * each > have + 1e-9:
            raise DistributedError(
                f"--workers {workers} with {each:g} {kind}s each need {workers * each:g} {kind}s; "
                f"the local Ray has {have:g} (lower --workers, or start a cluster: --address)"
            )


def predict_ray(
    segmenter_options: dict[str, Any],
    jobs: list[PredictJob],
    out_dir: str | os.PathLike[str],
    *,
    ray_options: RayOptions | None = None,
    summary: PredictSummary | None = None,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
    report: Callable[[str], None] = print,
    on_result: Callable[[InputResult], None] | None = None,
    **options: Any,
) -> PredictSummary:
    """:func:`~abanet.inference.predict.predict_jobs` over a Ray actor pool.

    ``segmenter_options``: the :class:`Segmenter` arguments each actor builds its session from
    (``device`` is chosen by :func:`actor_device`); ``options``: ``predict_jobs``'s (``soft``,
    ``extras``, ``whole_image``, ``overwrite``). Results are counted in ``summary`` (or a new
    one), passed to ``on_result`` and reported as the local engine does. Ctrl-C stops the run:
    ``summary.interrupted``; outputs are written atomically, so none is left half-written.
    """
    ray_options = ray_options or RayOptions()
    summary = PredictSummary() if summary is None else summary
    if not jobs:
        return summary
    ray = import_ray()
    seg = dict(segmenter_options)
    seg["device"] = actor_device(seg.get("device", "auto"), ray_options.gpus_per_worker)
    seg["num_threads"] = max(1, int(ray_options.cpus_per_worker))
    own = start_ray(ray_options)
    try:
        resources = ray.cluster_resources()
        workers = ray_options.workers or default_workers(ray_options, resources)
        if own and ray_options.address is None:
            check_fits(workers, ray_options, resources)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the caller's ``progress`` shows one bar
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per execution
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        rows = [{"path": str(j.path), "stem": j.stem.as_posix()} for j in jobs]
        data = ray.data.from_items(rows).map_batches(
            PredictActor,
            fn_constructor_kwargs={
                "segmenter_options": seg,
                "out": str(out_dir),
                "cwd": os.getcwd(),
                "options": options,
            },
            batch_size=max(1, min(MAX_BATCH, math.ceil(len(jobs) / workers))),
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=ray_options.cpus_per_worker,
            num_gpus=ray_options.gpus_per_worker or None,
        )

        def results() -> Iterator[InputResult]:
            for batch in data.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    yield InputResult(**row)

        stream: Iterator[InputResult] = results()
        if progress is not None:
            stream = progress(stream, len(jobs))
        for result in stream:
            take_result(summary, result, report, on_result)
    except KeyboardInterrupt:
        summary.interrupted = True
    except ray.exceptions.RayError as exc:
        raise DistributedError(f"the Ray run failed: {first_line(exc)}") from exc
    finally:
        if own:
            ray.shutdown()
    return summary
