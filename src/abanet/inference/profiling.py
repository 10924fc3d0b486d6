"""Where the time goes: seconds per pipeline stage, summed over the threads that ran it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the stages of ``abanet predict``, in pipeline order
STAGES = ("decode", "detect", "preprocess", "model", "postprocess", "encode")


class StageTimer:
    """Thread-safe accumulator of busy seconds and calls per stage.

    Stages overlap (decoding and encoding run in a thread pool beside the model), so the stage
    totals may add up to more than the wall time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.calls: dict[str, int] = {s: 0 for s in STAGES}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
                self.calls[name] = self.calls.get(name, 0) + 1

    def report(self, images: int, wall_s: float) -> dict[str, Any]:
        """JSON-ready figures: per stage seconds, ms per image and share of the busy time."""
        busy = sum(self.seconds.values()) or 1.0
        n = max(1, images)
        return {
            "images": images,
            "wall_s": wall_s,
            "images_per_s": images / wall_s if wall_s > 0 else 0.0,
            "stages": {
                s: {
                    "seconds": self.seconds[s],
                    "calls": self.calls[s],
                    "ms_per_image": 1000.0 * self.seconds[s] / n,
                    "share": self.seconds[s] / busy,
                }
                for s in self.seconds
            },
        }


def profile_table(report: dict[str, Any]) -> str:
    """A markdown table of :meth:`StageTimer.report`."""
    lines = [
        "| stage | busy s | ms/image | share | calls |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, st in report["stages"].items():
        lines.append(
            f"| {name} | {st['seconds']:.2f} | {st['ms_per_image']:.1f} | "
            f"{100 * st['share']:.0f} % | {st['calls']} |"
        )
    lines.append(
        f"\n{report['images']} images in {report['wall_s']:.2f} s wall "
        f"({report['images_per_s']:.1f} images/s); stages overlap, so busy time can exceed wall."
    )
    return "\n".join(lines)
