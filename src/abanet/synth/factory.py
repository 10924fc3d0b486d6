"""The dataset factory: landmarks for a folder of faces, then N seeded pairs written in parallel."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abanet.errors import DataError, ImageReadError, PlacementError
from abanet.synth.landmarks import yaw_ratio
from abanet.synth.render import SynthOptions, synthesize
from abanet.synth.templates import (
    DEFAULT_FAMILY_WEIGHTS,
    IMAGE_SUFFIXES,
    MaskTemplate,
    TemplateSet,
    default_templates_dir,
    load_templates,
)

LANDMARKS_CACHE = "landmarks.json"
REPORT_NAME = "synth.json"
MAX_ATTEMPTS = 3
#: Settings that must match an existing run in the same output folder (else: --overwrite).
_SETTINGS_KEYS = ("faces_dir", "seed", "size", "templates_dir", "options")


@dataclass
class SynthReport:
    """What :func:`generate` did."""

    out_dir: str
    requested: int
    written: int = 0
    existing: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    faces_total: int = 0
    faces_usable: int = 0
    faces_skipped_by_reason: dict[str, int] = field(default_factory=dict)
    faces_found_by: dict[str, int] = field(default_factory=dict)
    templates: dict[str, int] = field(default_factory=dict)
    styles: dict[str, int] = field(default_factory=dict)
    occluders: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def faces_skipped(self) -> int:
        return self.faces_total - self.faces_usable


# ----------------------------------------------------------------------------- seeding, choice


def item_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of item ``index``: depends only on (seed, index, attempt), never on workers."""
    key = [int(seed), int(index)] + ([int(attempt)] if attempt else [])
    return np.random.default_rng(np.random.SeedSequence(key))


def choose_template(
    templates: Sequence[MaskTemplate],
    landmarks: np.ndarray,
    rng: np.random.Generator,
    weights: dict[str, float] | None = None,
) -> MaskTemplate:
    """Pick a mask family by weight, then the view (front/left/right) whose nose position matches
    the head yaw estimated from the landmarks."""
    weights = DEFAULT_FAMILY_WEIGHTS if weights is None else weights
    fams: dict[str, list[MaskTemplate]] = {}
    for t in templates:
        fams.setdefault(t.family, []).append(t)
    names = sorted(fams)
    w = np.array([max(0.0, weights.get(n, 1.0)) for n in names], dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones(len(names))
    family = fams[names[int(rng.choice(len(names), p=w / w.sum()))]]
    r = yaw_ratio(landmarks) + rng.uniform(-0.04, 0.04)

    def view_ratio(t: MaskTemplate) -> float:
        return 0.5 if t.view == "front" else t.yaw_ratio

    return min(sorted(family, key=lambda t: t.name), key=lambda t: abs(view_ratio(t) - r))


# ----------------------------------------------------------------------------- files


def list_faces(faces_dir: Path) -> list[str]:
    """Image files under ``faces_dir`` (recursively), as sorted POSIX paths relative to it."""
    if not faces_dir.is_dir():
        raise DataError(f"{faces_dir}: faces folder not found")
    out = sorted(
        p.relative_to(faces_dir).as_posix()
        for p in faces_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not out:
        raise DataError(f"{faces_dir}: no images (.jpg/.png/...) found")
    return out


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image")
    return np.ascontiguousarray(img[..., ::-1])


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def load_landmarks_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read landmarks: ``{"faces": {rel_path: {"landmarks": [[x, y]]*68} | {"failed": why}}}``
    (what generate caches in ``OUT/landmarks.json``), or plain ``{rel_path: [[x, y]]*68 | null}``.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read landmarks ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    faces = raw.get("faces", raw) if isinstance(raw, dict) else None
    if not isinstance(faces, dict):
        raise DataError(f"{path}: expected a JSON object mapping face files to landmarks")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in faces.items():
        if entry is None:
            out[name] = {"failed": "no landmarks given"}
        elif isinstance(entry, dict) and ("landmarks" in entry or "failed" in entry):
            out[name] = entry
        elif isinstance(entry, list):
            out[name] = {"landmarks": entry, "how": "file"}
        else:
            raise DataError(f"{path}: entry {name!r} is neither a 68x2 list, null nor an object")
        if "landmarks" in out[name]:
            arr = np.asarray(out[name]["landmarks"], dtype=np.float64)
            if arr.shape != (68, 2):
                raise DataError(f"{path}: entry {name!r} has shape {arr.shape}, expected 68x2")
    return out


# ----------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {}


def _init_worker(tset: TemplateSet, options: dict[str, Any], faces_dir: str) -> None:
    import cv2

    cv2.setNumThreads(1)
    _STATE.update(tset=tset, options=SynthOptions(**options), faces_dir=Path(faces_dir))


def _detect(rel: str) -> tuple[str, dict[str, Any]]:
    if "landmarker" not in _STATE:
        from abanet.synth.landmarks import MeshLandmarker

        _STATE["landmarker"] = MeshLandmarker()
    try:
        rgb = read_rgb(_STATE["faces_dir"] / rel)
    except ImageReadError:
        return rel, {"failed": "unreadable image"}
    lm, how = _STATE["landmarker"](rgb)
    if lm is None:
        return rel, {"failed": how}
    return rel, {"landmarks": np.round(lm, 3).tolist(), "how": how}


def _render(spec: dict[str, Any]) -> dict[str, Any]:
    """Make item ``spec['index']`` and write its files; returns what happened."""
    import cv2

    tset: TemplateSet = _STATE["tset"]
    opts: SynthOptions = _STATE["options"]
    img_path, mask_path = Path(spec["image"]), Path(spec["mask"])
    overwrite = spec["overwrite"]
    if not overwrite and img_path.exists() and mask_path.exists():
        return {"index": spec["index"], "status": "existing"}
    try:
        face = read_rgb(_STATE["faces_dir"] / spec["face"])
    except ImageReadError:
        return {"index": spec["index"], "status": "skipped", "reason": "unreadable image"}
    lm = np.asarray(spec["landmarks"], dtype=np.float64)
    reason = "placement failed"
    for attempt in range(MAX_ATTEMPTS):
        rng = item_rng(spec["seed"], spec["index"], attempt)
        template = choose_template(tset.templates, lm, rng)
        info: dict[str, Any] = {}
        try:
            image, mask = synthesize(
                face, lm, template, rng, textures=tset.textures, options=opts, info=info
            )
        except PlacementError as exc:
            reason = exc.reason
            if reason in ("landmarks rejected", "bad face array"):
                break  # the same for every attempt
            continue
        except cv2.error:  # a degenerate warp OpenCV refuses: count it, keep the run going
            reason = "opencv error"
            continue
        quality = int(rng.integers(35, 96))
        ok1, jpg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        ok2, png = cv2.imencode(".png", mask)
        if not (ok1 and ok2):  # pragma: no cover - encoder failure
            return {"index": spec["index"], "status": "skipped", "reason": "encode failed"}
        if overwrite or not img_path.exists():
            _atomic_write(img_path, jpg.tobytes())
        if overwrite or not mask_path.exists():
            _atomic_write(mask_path, png.tobytes())
        info.update(jpeg_quality=quality, attempt=attempt)
        return {"index": spec["index"], "status": "written", "info": info}
    return {"index": spec["index"], "status": "skipped", "reason": reason}


# ----------------------------------------------------------------------------- driver


class _Runner:
    """Maps a worker function over items in-process (workers <= 1) or in one lazily started
    spawn-context process pool shared by both phases, with a tqdm progress bar."""

    def __init__(self, workers: int, initargs: tuple, progress: bool) -> None:
        self.workers, self.initargs, self.progress = workers, initargs, progress
        self.pool: Any = None
        self.local_ready = False

    def map(self, fn: Any, items: Sequence[Any], desc: str, chunksize: int) -> Iterator[Any]:
        from tqdm import tqdm

        if not items:
            return
        bar = tqdm(total=len(items), desc=desc, disable=not self.progress, unit="img")
        try:
            if self.workers <= 1:
                if not self.local_ready:
                    _init_worker(*self.initargs)
                    self.local_ready = True
                results: Iterator[Any] = map(fn, items)
            else:
                if self.pool is None:
                    import multiprocessing as mp

                    ctx = mp.get_context("spawn")
                    self.pool = ctx.Pool(
                        self.workers, initializer=_init_worker, initargs=self.initargs
                    )
                results = self.pool.imap(fn, items, chunksize=chunksize)
            for res in results:
                yield res
                bar.update()
        finally:
            bar.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None and exc[0] is not None:
            self.pool.terminate()
        self.close()


def _find_landmarks(
    runner: _Runner,
    faces: list[str],
    out_dir: Path,
    landmarks_file: str | Path | None,
    overwrite: bool,
) -> dict[str, dict[str, Any]]:
    """Landmarks per face: from the given file, else the face mesh (cached: OUT/landmarks.json)."""
    if landmarks_file is not None:
        known = load_landmarks_file(Path(landmarks_file))
        return {f: known.get(f, {"failed": "not in landmarks file"}) for f in faces}
    cache = out_dir / LANDMARKS_CACHE
    known = {}
    if cache.exists() and not overwrite:
        cached = load_landmarks_file(cache)
        known = {f: cached[f] for f in faces if f in cached}
    todo = [f for f in faces if f not in known]
    if todo:
        for rel, entry in runner.map(_detect, todo, "landmarks", 2):
            known[rel] = entry
        faces_out = {f: known[f] for f in faces}
        _write_json(cache, {"version": 1, "detector": "mediapipe-mesh-68", "faces": faces_out})
    return known


def _plan(
    usable: list[tuple[str, list]], n: int, seed: int, out_dir: Path, overwrite: bool
) -> list[dict[str, Any]]:
    """Item i uses face ``perm_k[i % F]`` (k = i // F: a fresh seeded shuffle per pass)."""
    specs: list[dict[str, Any]] = []
    nf = len(usable)
    perms: dict[int, np.ndarray] = {}
    for i in range(n if nf else 0):
        epoch = i // nf
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([int(seed), epoch, 0x5EED]).permutation(nf)
        face, lm = usable[int(perms[epoch][i % nf])]
        name = f"synth_{i:06d}"
        specs.append(
            {
                "index": i,
                "seed": int(seed),
                "face": face,
                "landmarks": lm,
                "image": str(out_dir / "images" / f"{name}.jpg"),
                "mask": str(out_dir / "masks" / f"{name}.png"),
                "overwrite": overwrite,
            }
        )
    return specs


def generate(
    faces_dir: str | Path,
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    templates_dir: str | Path | None = None,
    workers: int = 1,
    size: int = 256,
    overwrite: bool = False,
    landmarks_file: str | Path | None = None,
    options: SynthOptions | None = None,
    progress: bool = True,
) -> SynthReport:
    """Write ``n`` synthetic pairs ``out_dir/images/<name>.jpg`` + ``out_dir/masks/<name>.png``.

    Landmarks come from ``landmarks_file`` if given, else from the face mesh (cached in
    ``out_dir/landmarks.json`` and reused on the next run). Faces without usable landmarks are left
    out and counted; item ``i`` uses a seeded shuffle of the usable faces and its own generator
    ``item_rng(seed, i)``, so the bytes written do not depend on ``workers``. Existing files are
    kept (and counted) unless ``overwrite``. A summary goes to ``out_dir/synth.json``.
    """
    t0 = time.perf_counter()
    if n < 0:
        raise DataError(f"n must be >= 0, got {n}")
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")
    faces_dir = Path(faces_dir).resolve()
    out_dir = Path(out_dir).resolve()
    templates_dir = Path(templates_dir) if templates_dir is not None else default_templates_dir()
    templates_dir = templates_dir.resolve()
    opts = SynthOptions(**{**asdict(options or SynthOptions()), "size": size})
    tset = load_templates(templates_dir)
    faces = list_faces(faces_dir)

    settings = {
        "faces_dir": str(faces_dir),
        "seed": int(seed),
        "size": int(size),
        "templates_dir": str(templates_dir),
        "options": asdict(opts),
    }
    report_path = out_dir / REPORT_NAME
    if report_path.exists() and not overwrite:
        try:
            old = json.loads(report_path.read_text(encoding="utf-8")).get("settings", {})
        except (OSError, json.JSONDecodeError):
            old = {}
        diff = [k for k in _SETTINGS_KEYS if old.get(k) != settings[k]]
        if diff:
            raise DataError(
                f"{report_path}: this folder holds a run with other settings ({', '.join(diff)}); "
                "use another --out or pass --overwrite"
            )
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)

    report = SynthReport(out_dir=str(out_dir), requested=int(n), faces_total=len(faces))
    skip: Counter[str] = Counter()
    tpl: Counter[str] = Counter()
    sty: Counter[str] = Counter()
    occ: Counter[str] = Counter()
    with _Runner(workers, (tset, asdict(opts), str(faces_dir)), progress) as runner:
        known = _find_landmarks(runner, faces, out_dir, landmarks_file, overwrite)
        usable: list[tuple[str, list]] = []
        face_skip: Counter[str] = Counter()
        found_by: Counter[str] = Counter()
        for f in faces:
            entry = known[f]
            if "landmarks" in entry:  # checked against the image when rendered
                usable.append((f, entry["landmarks"]))
                found_by[entry.get("how", "file")] += 1
            else:
                face_skip[str(entry.get("failed", "no landmarks"))] += 1
        report.faces_usable = len(usable)
        report.faces_skipped_by_reason = dict(face_skip.most_common())
        report.faces_found_by = dict(found_by.most_common())

        specs = _plan(usable, n, seed, out_dir, overwrite)
        if n > 0 and not usable:
            skip["no usable faces"] = n
        for res in runner.map(_render, specs, "synth", 4):
            if res["status"] == "written":
                report.written += 1
                info = res["info"]
                tpl[info["template"]] += 1
                style = info["style"]
                sty[style if style.startswith("colour") else style.split(":")[0]] += 1
                occ.update(info["occluders"])
            elif res["status"] == "existing":
                report.existing += 1
            else:
                skip[res["reason"]] += 1
    report.skipped = sum(skip.values())
    report.skipped_by_reason = dict(skip.most_common())
    report.templates = dict(sorted(tpl.items()))
    report.styles = dict(sty.most_common())
    report.occluders = dict(occ.most_common())
    report.seconds = round(time.perf_counter() - t0, 2)
    _write_json(
        report_path,
        _report_json(report, settings, n, seed, workers, size, overwrite, landmarks_file),
    )
    return report


def _report_json(
    report: SynthReport,
    settings: dict[str, Any],
    n: int,
    seed: int,
    workers: int,
    size: int,
    overwrite: bool,
    landmarks_file: str | Path | None,
) -> dict[str, Any]:
    return {
        "settings": settings,
        "args": {
            "faces_dir": settings["faces_dir"],
            "out_dir": report.out_dir,
            "n": int(n),
            "seed": int(seed),
            "workers": int(workers),
            "size": int(size),
            "templates_dir": settings["templates_dir"],
            "overwrite": bool(overwrite),
            "landmarks_file": str(landmarks_file) if landmarks_file is not None else None,
        },
        "counts": {
            "requested": report.requested,
            "written": report.written,
            "existing": report.existing,
            "skipped": report.skipped,
            "skipped_by_reason": report.skipped_by_reason,
        },
        "faces": {
            "total": report.faces_total,
            "usable": report.faces_usable,
            "skipped": report.faces_skipped,
            "skipped_by_reason": report.faces_skipped_by_reason,
            "found_by": report.faces_found_by,
        },
        "written_by": {
            "template": report.templates,
            "style": report.styles,
            "occluder": report.occluders,
        },
        "seconds": report.seconds,
    }
