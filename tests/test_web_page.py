"""The web page of ``abanet serve`` in a real headless browser: Debian's Chromium driven by
Playwright, against the service on a loopback port (no other network)."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import sync_playwright

from abanet.inference.segmenter import Segmenter
from abanet.service import create_app
from tests.fixtures import LowerHalfModel

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    segmenter = Segmenter(LowerHalfModel(), device="cpu", backend="eager", detector=None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(segmenter), host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server: str):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(server + "/")
        page.requested = requested  # type: ignore[attr-defined]
        yield page
        browser.close()


def test_upload_shows_overlay_mask_and_downloads(page, server: str, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), (90, 120, 150)).save(photo)
    page.set_input_files("#files", str(photo))
    page.wait_for_selector(".card img.mask:not([hidden])", timeout=30000)
    card = page.locator(".card").first
    assert card.locator("h2").inner_text() == "photo.png"
    size = page.eval_on_selector(".card img.mask", "m => [m.naturalWidth, m.naturalHeight]")
    assert size == [80, 60]
    assert page.eval_on_selector(".card canvas", "c => [c.width, c.height]") == [80, 60]
    assert "mask 2400 px" in card.locator(".status").inner_text()  # the lower half

    with page.expect_download() as got:
        card.locator(".dl-mask").click()
    mask = np.asarray(Image.open(got.value.path()))
    assert got.value.suggested_filename == "photo.png" and mask.shape == (60, 80)
    assert mask[:30].max() == 0 and mask[30:].min() == 255
    with page.expect_download() as got:
        card.locator(".dl-labelme").click()
    doc = json.loads(Path(got.value.path()).read_text())
    assert doc["imagePath"] == "photo.png" and doc["shapes"][0]["label"] == "mask"
    with page.expect_download() as got:
        card.locator(".dl-cutout").click()
    assert Image.open(io.BytesIO(Path(got.value.path()).read_bytes())).mode == "RGBA"

    page.fill("#threshold", "0.9")  # a new threshold segments the photos again
    page.dispatch_event("#threshold", "input")
    page.wait_for_function("document.querySelector('.card .status').textContent.includes('0.9')")
    allowed = (server, "data:", "blob:")
    assert all(url.startswith(allowed) for url in page.requested)  # nothing from elsewhere
