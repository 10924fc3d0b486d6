"""FastAPI app: one Segmenter per process, images in, masks (PNG) or JSON out.

Endpoints:
    GET  /health            -> {"status": "ok", "model": name}
    GET  /model             -> the model's config (architecture, preprocessing, metadata)
    POST /predict           -> PNG mask (0/255, or 8-bit probabilities with soft=true)
    POST /predict/json      -> per-face boxes, scores, areas, polygons and the mask area
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from abanet.errors import AbanetError

MAX_UPLOAD_BYTES = 32 * 1024 * 1024


def create_app(segmenter: Any) -> FastAPI:
    """Build the app around a ready ``Segmenter`` (shared; calls are serialised by a lock)."""
    from abanet import __version__
    from abanet.data.io import read_image_bytes
    from abanet.inference.predict import OUTPUT_WRITERS, json_record

    app = FastAPI(
        title="abanet", version=__version__, description="Face-mask region segmentation (ABANet)."
    )
    lock = threading.Lock()

    async def _decode(file: UploadFile) -> np.ndarray:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"{file.filename}: larger than {MAX_UPLOAD_BYTES} bytes")
        try:
            return read_image_bytes(data, file.filename or "<upload>")
        except AbanetError as exc:
            raise HTTPException(400, str(exc)) from exc

    def _segment(image: np.ndarray, whole_image: bool) -> Any:
        with lock:
            return segmenter.segment(image, whole_image=whole_image)

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
    ) -> Response:
        image = await _decode(file)
        result = await run_in_threadpool(_segment, image, whole_image)
        return Response(
            OUTPUT_WRITERS["mask"].encode(image, result, file.filename or "<upload>", soft),
            media_type="image/png",
            headers={"X-Abanet-Faces": str(len(result.faces))},
        )

    @app.post("/predict/json")
    async def predict_json(
        file: UploadFile = File(...), whole_image: bool = Query(False)
    ) -> dict[str, Any]:
        image = await _decode(file)
        result = await run_in_threadpool(_segment, image, whole_image)
        return json_record(file.filename or "<upload>", result)

    return app
