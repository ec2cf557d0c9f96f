"""One endpoint, many callers: Herald driven the way the systems it is
compared with were driven (BENCHMARKS.md, "Compared with Svix").

Python callers (grpc.aio, one channel) enqueue COUNT deliveries as fast as
Herald accepts them, SENDERS calls in flight at a time, all to one receiver
(aiohttp, in a process of its own) that answers 204 at once. Herald runs as
`herald serve` with the defaults a user gets, on a fresh PostgreSQL database
(connected with `sslmode=disable`, as the other systems were) or SQLite
database. Reported per run:

- accepted/s: deliveries enqueued per second, from the first call to the
  last answer;
- delivered/s: deliveries received per second, from the first call to the
  last first arrival;
- the median and p99 from a call's start to the delivery's first arrival
  at the receiver (both processes read the machine's monotonic clock);
- CPU seconds per 1,000 deliveries of the Herald process and of every
  PostgreSQL process, from /proc, over the run.

    python -m venv /tmp/compare && /tmp/compare/bin/pip install -r tests/compare/requirements.txt
    cargo build --release -p herald-server
    /tmp/compare/bin/python tests/compare/one_endpoint.py target/release/herald \\
        --db postgres --senders 8 32 64 --count 20000 --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "client" / "python"))

import grpc  # noqa: E402
from herald_example import load_stubs  # noqa: E402
from test_example import start_herald  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def receiver_process(port_out, stop) -> None:
    """Serves the receiver until `stop` is set; sends its port, then the
    first-arrival times (by delivery number) when stopped."""
    from aiohttp import web

    first_seen: dict[int, float] = {}

    async def receive(request: web.Request) -> web.Response:
        now = time.monotonic()
        number = json.loads(await request.read())["n"]
        first_seen.setdefault(number, now)
        return web.Response(status=204)

    async def count(_: web.Request) -> web.Response:
        return web.Response(text=str(len(first_seen)))

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", receive)
        app.router.add_get("/count", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_out.send(site._server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
        port_out.send(first_seen)
        await runner.cleanup()

    asyncio.run(serve())


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds of `pids` (those still running)."""
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on the machine (server and backends)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def send_all(address: str, url: str, count: int, senders: int, messages) -> tuple[dict, float]:
    """Enqueues `count` deliveries with `senders` calls in flight; returns
    each one's start time and the time the last call was answered."""
    from herald.v1 import delivery_service_pb2_grpc as services

    started: dict[int, float] = {}
    numbers = iter(range(count))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = services.DeliveryServiceStub(channel)

        async def sender() -> None:
            for number in numbers:
                started[number] = time.monotonic()
                await stub.Enqueue(
                    messages.EnqueueRequest(
                        url=url,
                        body=json.dumps({"n": number, "type": "compare.ping"}).encode(),
                        content_type="application/json",
                        idempotency_key=str(uuid.uuid4()),
                    ),
                    timeout=60,
                )

        await asyncio.gather(*(sender() for _ in range(senders)))
    return started, time.monotonic()


def one_run(args, senders: int, messages) -> dict:
    """One run on a fresh database; the figures above."""
    with tempfile.TemporaryDirectory() as directory:
        if args.db == "postgres":
            name = f"herald_compare_{uuid.uuid4().hex[:12]}"
            subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
            database_url = f"postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable"
        else:
            database_url = f"sqlite://{directory}/herald.db?mode=rwc"
        ports, theirs = multiprocessing.Pipe()
        stop = multiprocessing.Event()
        receiver = multiprocessing.Process(target=receiver_process, args=(theirs, stop))
        receiver.start()
        port = ports.recv()
        url = f"http://127.0.0.1:{port}/hook"
        herald, address = start_herald(args.herald, database_url)
        try:
            pids = [herald.pid] + (postgres_pids() if args.db == "postgres" else [])
            cpu_before = cpu_seconds([herald.pid]), cpu_seconds(pids[1:])
            begun = time.monotonic()
            started, accepted_at = asyncio.run(send_all(address, url, args.count, senders, messages))
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and received(port) < args.count:
                time.sleep(0.2)
            cpu_after = cpu_seconds([herald.pid]), cpu_seconds(postgres_pids() if args.db == "postgres" else [])
            stop.set()
            first_seen = ports.recv()
            receiver.join()
        finally:
            herald.terminate()
            herald.wait(timeout=60)
            if receiver.is_alive():
                receiver.terminate()
            if args.db == "postgres":
                subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--force", name], check=True)
    latencies = sorted(first_seen[n] - started[n] for n in first_seen if n in started)
    last = max(first_seen.values()) if first_seen else begun
    return {
        "db": args.db,
        "senders": senders,
        "count": args.count,
        "received": len(first_seen),
        "accepted_per_s": args.count / (accepted_at - begun),
        "delivered_per_s": len(first_seen) / (last - begun),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else None,
        "herald_cpu_per_1000": (cpu_after[0] - cpu_before[0]) / args.count * 1000,
        "db_cpu_per_1000": (cpu_after[1] - cpu_before[1]) / args.count * 1000,
    }


def received(port: int) -> int:
    """Deliveries the receiver has seen so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as answer:
        return int(answer.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("herald", help="the herald binary")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--senders", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for delivery")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as stubs:
        messages, _, _ = load_stubs(stubs)
        print("db        senders  count  accepted/s  delivered/s  p50_ms   p99_ms  herald_cpu/1000  db_cpu/1000")
        for senders in args.senders:
            for _ in range(args.runs):
                r = one_run(args, senders, messages)
                print(
                    f"{r['db']:<9} {r['senders']:>7} {r['received']:>6} {r['accepted_per_s']:>11.0f} "
                    f"{r['delivered_per_s']:>12.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>8.1f} "
                    f"{r['herald_cpu_per_1000']:>16.3f} {r['db_cpu_per_1000']:>12.3f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
