"""Frames per second of ``abanet predict VIDEO --overlay`` on a generated 640x480 clip.

The clip (``--frames`` frames at 25 frames/s, H.264) pans a 640x480 window over the shipped
two-face sample photo, so the detector, the tracker and the model all work as on a real video.
Prints the frames/s of the whole run (decode, track, segment, overlay, encode both videos), the
CPU time the process used per frame (on a machine shared with other work, ``2 cores /
cpu_ms_per_frame`` bounds what two free cores would give) and where the time went.

    python scripts/video_benchmark.py --frames 250 [--detect-every 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from abanet.inference.profiling import profile_table
from abanet.inference.segmenter import Segmenter, default_samples_dir
from abanet.inference.video import open_video, segment_stream, video_outputs


def make_clip(path: Path, frames: int, sample: str = "sample_two_faces.jpg") -> Path:
    """A 640x480 window panning smoothly over a shipped sample photo (960x540, two masked
    faces), 25 frames/s."""
    photo = np.asarray(Image.open(default_samples_dir() / sample).convert("RGB"))
    h, w = photo.shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(frames):
            x = round((w - 640) * (0.5 + 0.5 * np.sin(i / 40)))
            y = round((h - 480) * (0.5 + 0.5 * np.cos(i / 30)))
            frame = np.ascontiguousarray(photo[y : y + 480, x : x + 640])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    segmenter = Segmenter(args.model, backend=args.backend)
    _ = segmenter.backend, segmenter.detector  # built before the clock starts
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", max(1, min(5000, args.frames)))
        paths = video_outputs(Path(tmp) / "out", Path("clip"), overlay=True, frames=False)
        before = resource.getrusage(resource.RUSAGE_SELF)
        summary = segment_stream(
            segmenter, open_video(clip), paths, overlay=True, detect_every=args.detect_every
        )
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {
        "frames": summary.frames,
        "frames_per_s": round(summary.fps, 2),
        "cpu_ms_per_frame": round(1000 * cpu_s / max(1, summary.frames), 1),
        "cores_used": round(cpu_s / summary.seconds, 2) if summary.seconds else None,
        "detections": summary.detections,
        "masked_frames": summary.masked_frames,
        "backend": getattr(segmenter.backend, "name", args.backend),
        "detector": getattr(segmenter.detector, "name", None),
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "profile": summary.profile,
    }
    print(profile_table(summary.profile))
    print(json.dumps({k: v for k, v in result.items() if k != "profile"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
