"""The HTTP service, through FastAPI's test client (no sockets)."""

from __future__ import annotations

import io

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
