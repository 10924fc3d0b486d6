"""What the service checks before a request reaches FastAPI (an ASGI middleware).

In order: the bearer token (when one is set; never for ``/health`` and the static page ``/``),
the declared body size (``Content-Length`` over the limit: 413 before a byte is read), a place
in the bounded queue of prediction requests (full: 503 with ``Retry-After``), and the body size
while it streams (a chunked body passing the limit: 413, the rest is never read, so no large
temporary file is written).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: paths served without the token: the liveness probe and the (data-free) web page
OPEN_PATHS = frozenset({"/health", "/"})


@dataclass(frozen=True)
class Limits:
    """Service limits (``abanet serve`` options)."""

    max_upload_bytes: int = 32 * 1024 * 1024  # request body
    max_pixels: int = 40_000_000  # width x height, read from the image header before decoding
    max_queue: int = 8  # prediction requests admitted at once (decoding, waiting, segmenting)
    retry_after_s: int = 1  # the Retry-After of a 503 when the queue is full


async def respond(send: Send, status: int, detail: str, headers: dict[str, str] | None = None):
    """Send a complete JSON ``{"detail": ...}`` response."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Token, body-size and queue checks around an ASGI app (see the module docstring)."""

    def __init__(self, app: ASGIApp, limits: Limits, token: str | None = None) -> None:
        self.app = app
        self.limits = limits
        self.token = token or None
        self.active = 0  # prediction requests admitted and not yet answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token and path not in OPEN_PATHS and not self._authorised(headers):
            await respond(
                send, 401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )
            return
        limit = self.limits.max_upload_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await respond(send, 413, f"request body of {declared} bytes is over {limit} bytes")
            return
        if not (scope.get("method") == "POST" and path.startswith("/predict")):
            await self._capped(scope, receive, send)
            return
        if self.active >= self.limits.max_queue:
            retry = {"Retry-After": str(self.limits.retry_after_s)}
            await respond(send, 503, f"busy: {self.active} requests queued, try again", retry)
            return
        self.active += 1
        try:
            await self._capped(scope, receive, send)
        finally:
            self.active -= 1

    def _authorised(self, headers: dict[str, str]) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), str(self.token))

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; a body that streams past the limit is answered 413 and not read on."""
        limit = self.limits.max_upload_bytes
        seen = 0
        state = {"started": False, "refused": False}

        async def capped_receive() -> Message:
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await respond(send, 413, f"request body is over {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 went out: what the app answers to the cut body is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise
