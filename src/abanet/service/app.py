"""FastAPI app: one Segmenter per process, images in, masks (PNG), other outputs or JSON out.

Endpoints:
    GET  /                  -> the web page (service/static/index.html: upload, inspect, download)
    GET  /health            -> {"status": "ok", "model": name}
    GET  /model             -> the model's config (architecture, preprocessing, metadata)
    POST /predict           -> PNG mask (0/255, or 8-bit probabilities with soft=true)
    POST /predict/json      -> per-face boxes, scores, areas, polygons and the mask area
                               (mask=true adds the mask PNG, base64, as "mask_png")
    POST /predict/<kind>    -> every other kind of ``OUTPUT_WRITERS``: overlay (JPEG), cutout
                               (RGBA PNG), labelme (LabelMe JSON whose imagePath is the upload's
                               file name)

Uploads are checked by :class:`abanet.service.guard.Guard` (token, body size, queue) before they
are read; decoding, segmenting and encoding run in worker threads, never on the event loop.
"""

from __future__ import annotations

import base64
import copy
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from abanet.errors import AbanetError, ImageTooLargeError
from abanet.service.guard import Guard, Limits

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".json": "application/json"}


def create_app(
    segmenter: Any,
    limits: Limits | None = None,
    token: str | None = None,
    cors_origins: list[str] | tuple[str, ...] = (),
) -> FastAPI:
    """Build the app around a ready ``Segmenter`` (shared; model calls are serialised by a lock).

    ``token``: a bearer token every endpoint but ``/health`` and ``/`` requires. ``cors_origins``:
    origins allowed to call the API from other web pages (none by default).
    """
    from abanet import __version__
    from abanet.data.io import read_image_bytes
    from abanet.inference.predict import OUTPUT_WRITERS, json_record

    limits = limits or Limits()
    app = FastAPI(
        title="abanet", version=__version__, description="Face-mask region segmentation (ABANet)."
    )
    lock = threading.Lock()
    page = resources.files("abanet.service").joinpath("static/index.html").read_text("utf-8")

    def segment(data: bytes, name: str, whole_image: bool, threshold: float | None) -> tuple:
        """Decode (pixel limit from the header first) and segment; runs in a worker thread."""
        try:
            image = read_image_bytes(data, name, max_pixels=limits.max_pixels)
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from exc
        except AbanetError as exc:
            raise HTTPException(400, str(exc)) from exc
        with lock:
            seg = segmenter
            if threshold is not None:
                _ = segmenter.backend, segmenter.detector  # built once, shared by the copy
                seg = copy.copy(segmenter)
                seg.threshold = threshold
            return image, seg.segment(image, whole_image=whole_image)

    async def run(file: UploadFile, whole_image: bool, threshold: float | None, encode) -> Any:
        data = await file.read()
        name = Path(file.filename or "upload").name

        def work() -> Any:
            image, result = segment(data, name, whole_image, threshold)
            return encode(image, result, name)

        return await run_in_threadpool(work)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": segmenter.model.config.name}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        return segmenter.model.config.to_dict()

    @app.post("/predict", responses={200: {"content": {"image/png": {}}}})
    async def predict(
        file: UploadFile = File(...),
        soft: bool = Query(False, description="8-bit probabilities instead of 0/255"),
        whole_image: bool = Query(False, description="skip face detection"),
        threshold: float | None = Query(None, ge=0.0, le=1.0, description="default: model's"),
    ) -> Response:
        def encode(image: np.ndarray, result: Any, name: str) -> Response:
            return Response(
                OUTPUT_WRITERS["mask"].encode(image, result, name, soft),
                media_type="image/png",
                headers={"X-Abanet-Faces": str(len(result.faces))},
            )

        return await run(file, whole_image, threshold, encode)

    @app.post("/predict/json")
    async def predict_json(
        file: UploadFile = File(...),
        whole_image: bool = Query(False),
        threshold: float | None = Query(None, ge=0.0, le=1.0),
        mask: bool = Query(False, description="add the mask PNG (base64) as mask_png"),
    ) -> dict[str, Any]:
        def encode(image: np.ndarray, result: Any, name: str) -> dict[str, Any]:
            record = json_record(name, result)
            if mask:
                png = OUTPUT_WRITERS["mask"].encode(image, result, name, False)
                record["mask_png"] = base64.b64encode(png).decode("ascii")
            return record

        return await run(file, whole_image, threshold, encode)

    for kind in OUTPUT_WRITERS:
        if kind not in ("mask", "json"):
            add_writer_route(app, kind, run)

    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
            expose_headers=["X-Abanet-Faces"],
        )
    app.add_middleware(Guard, limits=limits, token=token)
    return app


def add_writer_route(app: FastAPI, kind: str, run: Any) -> None:
    """``POST /predict/<kind>``: the upload's output of the ``OUTPUT_WRITERS`` kind."""
    from abanet.inference.predict import OUTPUT_WRITERS

    writer = OUTPUT_WRITERS[kind]
    media_type = MEDIA_TYPES["." + writer.suffix.rsplit(".", 1)[-1]]

    async def endpoint(
        file: UploadFile = File(...),
        whole_image: bool = Query(False),
        threshold: float | None = Query(None, ge=0.0, le=1.0),
    ) -> Response:
        def encode(image: np.ndarray, result: Any, name: str) -> Response:
            data = writer.encode(image, result, name, False)
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).stem)  # a header is latin-1
            disposition = f'attachment; filename="{safe}{writer.suffix}"'
            return Response(
                data, media_type=media_type, headers={"Content-Disposition": disposition}
            )

        return await run(file, whole_image, threshold, encode)

    app.add_api_route(
        f"/predict/{kind}",
        endpoint,
        methods=["POST"],
        name=f"predict_{kind}",
        response_class=Response,
        responses={200: {"content": {media_type: {}}}},
    )
