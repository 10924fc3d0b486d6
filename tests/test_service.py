"""The HTTP service, through FastAPI's test client (no sockets)."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from abanet.inference.segmenter import Segmenter
from abanet.service import create_app
from tests.fixtures import LowerHalfModel


@pytest.fixture(scope="module")
def client() -> TestClient:
    segmenter = Segmenter(LowerHalfModel(), device="cpu", backend="eager", detector=None)
    return TestClient(create_app(segmenter))


def png_bytes(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(buf, format="PNG")
    return buf.getvalue()


def test_health_and_model(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "model": "lower_half"}
    assert client.get("/model").json()["input_size"] == 64


def test_predict_returns_png_mask(client: TestClient) -> None:
    res = client.post("/predict", files={"file": ("x.png", png_bytes(), "image/png")})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    mask = np.asarray(Image.open(io.BytesIO(res.content)))
    assert mask.shape == (30, 40)
    assert mask[0].max() == 0 and mask[-1].min() == 255


def test_predict_json(client: TestClient) -> None:
    res = client.post("/predict/json", files={"file": ("x.png", png_bytes(), "image/png")})
    body = res.json()
    assert res.status_code == 200 and body["image"] == "x.png" and "faces" in body


def test_bad_upload_is_400_naming_the_file(client: TestClient) -> None:
    res = client.post("/predict", files={"file": ("broken.jpg", b"nope", "image/jpeg")})
    assert res.status_code == 400 and "broken.jpg" in res.json()["detail"]


def pixel_bomb_png(width: int = 13000, height: int = 13000) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels and no pixel data (a few dozen bytes):
    decoding it would fail (400); refusing it from the header gives 413."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def make_app(**kwargs):
    from abanet.service.guard import Limits

    segmenter = kwargs.pop("segmenter", None) or Segmenter(
        LowerHalfModel(), device="cpu", backend="eager", detector=None
    )
    return create_app(segmenter, Limits(**kwargs.pop("limits", {})), **kwargs)


def test_pixel_bomb_is_413_from_the_header(client: TestClient) -> None:
    res = client.post("/predict", files={"file": ("bomb.png", pixel_bomb_png(), "image/png")})
    assert res.status_code == 413
    assert "bomb.png" in res.json()["detail"] and "13000x13000" in res.json()["detail"]


def test_declared_body_over_the_limit_is_413_unread() -> None:
    import asyncio

    from abanet.service.guard import Limits

    app = make_app(limits={"max_upload_bytes": 1000})
    pulled, sent = [], []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 500, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-length", b"100000000")],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and not pulled
    assert Limits().max_upload_bytes == 32 * 1024 * 1024


def test_streamed_body_is_cut_at_the_limit() -> None:
    """A chunked upload (no Content-Length) is refused once it passes the limit; the rest of the
    100 MB is never pulled, so nothing is spooled to disk."""
    import asyncio

    app = make_app(limits={"max_upload_bytes": 256 * 1024})
    chunk = 64 * 1024
    boundary = b"abanetboundary"
    head = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.png"'
        b"\r\nContent-Type: image/png\r\n\r\n"
    )
    pulled, sent = [], []

    async def receive():
        pulled.append(1)
        body = head if len(pulled) == 1 else b"\0" * chunk
        return {"type": "http.request", "body": body, "more_body": len(pulled) < 1600}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"content-type", b"multipart/form-data; boundary=" + boundary)],
    }
    asyncio.run(app(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [413]
    assert len(pulled) <= 256 * 1024 // chunk + 2  # of 1600 chunks (100 MB)


class BlockingSegmenter(Segmenter):
    """Segments only once ``gate`` is set (holds requests inside the service)."""

    gate = threading.Event()
    entered = threading.Event()

    def segment(self, image, whole_image=False):
        self.entered.set()
        assert self.gate.wait(10)
        return super().segment(image, whole_image)


def test_queue_full_is_503_with_retry_after() -> None:
    seg = BlockingSegmenter(LowerHalfModel(), device="cpu", backend="eager", detector=None)
    client = TestClient(make_app(segmenter=seg, limits={"max_queue": 1, "retry_after_s": 2}))
    files = {"file": ("x.png", png_bytes(), "image/png")}
    first: list = []
    worker = threading.Thread(target=lambda: first.append(client.post("/predict", files=files)))
    worker.start()
    try:
        assert seg.entered.wait(10)
        busy = client.post("/predict", files=files)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert client.get("/health").status_code == 200  # the loop is not blocked
    finally:
        seg.gate.set()
        worker.join(10)
    assert first[0].status_code == 200
    assert client.post("/predict", files=files).status_code == 200  # the slot was given back


def test_token_guards_all_but_health_and_page() -> None:
    client = TestClient(make_app(token="s3cret"))
    files = {"file": ("x.png", png_bytes(), "image/png")}
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/model").status_code == 401
    res = client.post("/predict", files=files)
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/predict", files=files, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    assert client.post("/predict", files=files, headers=right).status_code == 200


def test_cors_is_off_by_default_and_opt_in() -> None:
    origin = {"Origin": "https://elsewhere.example"}
    assert (
        "access-control-allow-origin"
        not in TestClient(make_app()).get("/health", headers=origin).headers
    )
    opened = TestClient(make_app(cors_origins=["https://elsewhere.example"]))
    res = opened.get("/health", headers=origin)
    assert res.headers["access-control-allow-origin"] == "https://elsewhere.example"


def test_decoding_runs_off_the_event_loop(monkeypatch) -> None:
    import asyncio

    from abanet.data import io

    threads = []
    real = io.read_image_bytes

    def spy(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            threads.append("event loop")
        except RuntimeError:
            threads.append("worker")
        return real(*args, **kwargs)

    monkeypatch.setattr(io, "read_image_bytes", spy)
    res = TestClient(make_app()).post(
        "/predict", files={"file": ("x.png", png_bytes(), "image/png")}
    )
    assert res.status_code == 200 and threads == ["worker"]


def test_labelme_cutout_overlay_and_threshold(client: TestClient) -> None:
    files = {"file": ("dir/photo one.png", png_bytes(), "image/png")}
    doc = client.post("/predict/labelme", files=files).json()
    assert doc["imagePath"] == "photo one.png" and doc["shapes"][0]["label"] == "mask"
    cut = client.post("/predict/cutout", files=files)
    assert Image.open(io.BytesIO(cut.content)).mode == "RGBA"
    assert cut.headers["content-disposition"] == 'attachment; filename="photo_one_cutout.png"'
    assert client.post("/predict/overlay", files=files).headers["content-type"] == "image/jpeg"
    rec = client.post("/predict/json?mask=true&threshold=0.9", files=files).json()
    assert rec["threshold"] == 0.9
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(rec["mask_png"]))))
    assert mask.shape == (30, 40) and mask[-1].min() == 255
    assert client.post("/predict?threshold=2", files=files).status_code == 422


def test_page_is_served_and_self_contained(client: TestClient) -> None:
    import re

    res = client.get("/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert 'id="files"' in res.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", res.text)  # no CDN
