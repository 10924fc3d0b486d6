"""Shared fixtures. Tests never touch the network and use tiny sizes."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread (and one core as far as the backends know): quick on a busy CPU, where
    two threads thrash when cores are shared."""
    from abanet.inference.backends import devices

    before = torch.get_num_threads()
    monkeypatch.setattr(devices, "available_cores", lambda: 1)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache_in_tmp(tmp_path, monkeypatch):
    """abanet's ONNX and auto-backend caches in a temporary folder, empty at the start."""
    from abanet.inference.backends.auto import clear_auto_cache

    monkeypatch.setenv("ABANET_CACHE_DIR", str(tmp_path / "cache"))
    clear_auto_cache()
    yield
    clear_auto_cache()
