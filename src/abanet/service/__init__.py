"""HTTP service (FastAPI): ``abanet serve``."""

from abanet.service.app import create_app

__all__ = ["create_app"]
