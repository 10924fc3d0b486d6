"""Load test of ``abanet serve`` on loopback: throughput, latency, memory, and the limits.

Starts its own server (``python -m abanet serve`` on 127.0.0.1, a free port; nothing else is
contacted), then runs ``--rounds`` rounds of ``--requests`` uploads of a sample photo with
``--concurrency`` at once, printing per round answered requests/s, their p50/p95 latency, the
status codes (503: the queue was full) and the server's resident memory; then the limits: a
pixel bomb (a PNG header of 13000x13000 pixels), a 100 MB streamed (chunked) body, and /health
latency while both run. Bounded: at most 64 concurrent requests and 5000 per round.

    python scripts/load_test.py --rounds 5 --requests 200 --concurrency 16 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx

SAMPLE = Path(__file__).resolve().parent.parent / "src/abanet/assets/samples/sample_surgical.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pixel_bomb(side: int = 13000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


async def one_round(client: httpx.AsyncClient, n: int, concurrency: int, data: bytes) -> dict:
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []
    codes: dict[int, int] = {}

    async def call() -> None:
        async with gate:
            t0 = time.perf_counter()
            res = await client.post("/predict", files={"file": ("p.jpg", data, "image/jpeg")})
            if res.status_code == 200:  # latency of the answered ones (a 503 comes at once)
                times.append(time.perf_counter() - t0)
            codes[res.status_code] = codes.get(res.status_code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(call() for _ in range(n)))
    wall = time.perf_counter() - t0
    ok = codes.get(200, 0)
    return {
        "requests": n,
        "ok_per_s": round(ok / wall, 2),
        "p50_ms": round(1000 * pct(times, 0.5), 1),
        "p95_ms": round(1000 * pct(times, 0.95), 1),
        "codes": codes,
    }


async def health_ms(client: httpx.AsyncClient, stop: asyncio.Event) -> list[float]:
    out = []
    while not stop.is_set():
        t0 = time.perf_counter()
        await client.get("/health")
        out.append(1000 * (time.perf_counter() - t0))
        await asyncio.sleep(0.02)
    return out


async def limits(client: httpx.AsyncClient, pid: int) -> dict:
    before = rss_mb(pid)
    stop = asyncio.Event()
    probe = asyncio.create_task(health_ms(client, stop))
    t0 = time.perf_counter()
    bombs = await asyncio.gather(
        *(
            client.post("/predict", files={"file": ("bomb.png", pixel_bomb(), "image/png")})
            for _ in range(4)
        )
    )
    bomb_s = time.perf_counter() - t0

    async def hundred_mb():  # a well-formed multipart head, then 100 MB of one file's data
        yield (
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        for _ in range(100):
            yield b"\0" * (1024 * 1024)

    t0 = time.perf_counter()
    try:
        big = await client.post(
            "/predict",
            content=hundred_mb(),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        big_status: int | str = big.status_code
    except httpx.HTTPError as exc:  # the server may close the connection after its 413
        big_status = f"connection closed ({type(exc).__name__})"
    big_s = time.perf_counter() - t0
    stop.set()
    health = await probe
    return {
        "pixel_bomb_x4": [r.status_code for r in bombs],
        "pixel_bomb_x4_s": round(bomb_s, 3),
        "streamed_100mb": big_status,
        "streamed_100mb_s": round(big_s, 3),
        "health_max_ms_meanwhile": round(max(health), 1) if health else None,
        "rss_mb_before": round(before, 1),
        "rss_mb_after": round(rss_mb(pid), 1),
    }


async def main_async(args: argparse.Namespace, port: int, pid: int) -> dict:
    data = Path(args.image).read_bytes()
    base = f"http://127.0.0.1:{port}"
    timeout = httpx.Timeout(120.0)
    limits_ = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits_) as client:
        rounds = [{"round": 0, "rss_mb": round(rss_mb(pid), 1)}]
        for i in range(1, args.rounds + 1):
            r = await one_round(client, args.requests, args.concurrency, data)
            r.update(round=i, rss_mb=round(rss_mb(pid), 1))
            print(json.dumps(r), flush=True)
            rounds.append(r)
        lim = await limits(client, pid)
        print(json.dumps(lim), flush=True)
    return {"rounds": rounds, "limits": lim}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--image", default=str(SAMPLE))
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--serve-args", default="", help="extra `abanet serve` options")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    args.concurrency = max(1, min(64, args.concurrency))
    args.requests = max(1, min(5000, args.requests))
    port = free_port()
    cmd = [sys.executable, "-m", "abanet", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--max-queue", str(args.max_queue), *args.serve_args.split()]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.5)
        result = asyncio.run(main_async(args, port, server.pid))
        result["settings"] = vars(args) | {"cpus": os.cpu_count()}
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
