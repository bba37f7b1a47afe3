"""Throughput and latency of the webhook receiver, and proof that nothing acknowledged is lost.

Starts ``whop-pipeline webhooks serve`` in a separate process (client and server never share a
GIL), sends ``--n`` signed deliveries with ``--concurrency`` requests in flight, re-sends
``--duplicates`` of them (default 5%) with the same ``webhook-id``, then checks the inbox: every
acknowledged delivery must be there exactly once.

Prints deliveries/s, p50/p99/max latency, acknowledged deliveries vs rows in the inbox (lost must
be 0), duplicates re-sent vs answered ``duplicate``, and the CPU used by the receiver, the client
and everything else on the machine meanwhile (a busy neighbour skews a run; the receiver's CPU
per delivery does not move much).

The default client is ``httpx.AsyncClient``. On a 2-core machine it is the bottleneck: it spends
about 1.5-2 ms of CPU per request, twice what the receiver does, so it saturates one core at
~550 deliveries/s and its own queueing dominates p99. ``--client raw`` (a minimal asyncio HTTP/1.1
keep-alive client) leaves the CPU to the receiver and measures what the receiver can take.

    uv run python benchmarks/bench_receiver.py                       # SQLite in a temp folder
    uv run python benchmarks/bench_receiver.py --client raw
    uv run python benchmarks/bench_receiver.py --n 20000 --concurrency 32 --client raw
    uv run python benchmarks/bench_receiver.py --db-url postgresql+psycopg2://postgres@127.0.0.1/test

Against Postgres the run uses a connection name of its own and deletes its rows afterwards; the
SQLite database and the receiver's log live in a temp folder that is removed (``--keep`` leaves
both).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvloop

from benchmarks import common
from whop_pipeline.sandbox.common import free_port
from whop_pipeline.sandbox.whop.webhooks import sign
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.tables import webhook_inbox

SECRET = "ws_bench_5f2c1b0e9d8a7c6b5a4f3e2d1c0b9a8f"
TARGET_RATE = 500.0
TARGET_P99_MS = 50.0


# The unchanging part of a payment.succeeded payload, a Payment (docs/whop-api.md#payments),
# trimmed.
_PAYMENT: dict[str, Any] = {
    "status": "paid", "substatus": "succeeded", "billing_reason": "subscription_cycle",
    "created_at": "2026-10-03T14:22:12.000Z", "updated_at": "2026-10-03T14:22:19.804Z",
    "paid_at": "2026-10-03T14:22:18.000Z", "product_id": "prod_Jr5tXw2KpQ8mNa",
    "plan_id": "plan_V3cB9sDq1ZyLkE", "currency": "usd", "refunded_amount": None,
    "payment_method_type": "card", "metadata": None,
}  # fmt: skip


def envelope(n: int, run: str) -> bytes:
    """A ``payment.succeeded`` delivery about as large as a real one (~1 KB)."""
    amount = {"amount": f"{49 + n % 50}.00", "currency": "usd", "decimals": 2}
    data = {
        "id": f"pay_{run}_{n:07d}",
        **_PAYMENT,
        "membership_id": f"mem_{n:07d}",
        "member_id": f"mber_{n:07d}",
        "user": {"id": f"user_{n:07d}", "username": f"user{n}", "name": f"User {n}"},
        "customer_email": f"user{n}@example.com",
        "subtotal": amount,
        "total": amount,
        "usd_total": amount,
        "line_items": [{"label": "Acme Signals Pro", "quantity": 1, "subtotal": amount}],
    }
    body = {
        "id": f"msg_{run}_{n:07d}",
        "type": "payment.succeeded",
        "api_version": "v1",
        "api_version_date": "2026-10-15-1",
        "account_id": "biz_Q7yH3nWc9pLs2d",
        "timestamp": "2026-10-03T14:22:42.118Z",
        "data": data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def start_server(db_url: str, connection: str, port: int, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "WHOP_WEBHOOK_SECRET": SECRET,
        "WHOP_PIPELINE_CONNECTION": connection,
        "WHOP_PIPELINE_DB_URL": db_url,
    }
    env.pop("WHOP_PIPELINE_CONNECTIONS_FILE", None)
    command = [sys.executable, "-m", "whop_pipeline.cli", "webhooks", "serve", "--port", str(port)]
    log = log_path.open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the receiver did not start; see {log_path}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the cheapest load generator, so the
    measurement is about the receiver's CPU, not the client's (httpx spends ~2 ms of CPU per
    request here, more than the receiver does)."""

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def send_all(
    url: str, plan: list[tuple[str, bytes]], concurrency: int, client: str
) -> tuple[list[float], list[tuple[str, int, str]], float]:
    """POST every ``(webhook_id, body)`` with ``concurrency`` workers, each on one keep-alive
    connection; returns latencies (s), answers ``(webhook_id, status, "stored"|"duplicate"|...)``
    and the wall time (s)."""
    latencies: list[float] = []
    answers: list[tuple[str, int, str]] = []
    pending = collections.deque(plan)

    # One httpx client per worker (so one connection each): httpcore's pool rescans all its
    # connections on every request, which gets expensive once 16 requests share one pool. They
    # share one TLS context (each would otherwise load the CA bundle, ~50 ms, on the clock).
    tls = httpx.create_ssl_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(limits=limits, timeout=30, verify=tls) if client == "httpx" else None
        for _ in range(concurrency)
    ]

    async def worker(http: httpx.AsyncClient | None) -> None:
        raw = RawConnection(url)
        try:
            while pending:
                webhook_id, body = pending.popleft()
                sent = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "webhook-id": webhook_id,
                    "webhook-timestamp": str(sent),
                    "webhook-signature": sign(SECRET, webhook_id, sent, body),
                }
                started = time.perf_counter()
                try:
                    if http is not None:
                        response = await http.post(url, content=body, headers=headers)
                        status, payload = response.status_code, response.content
                    else:
                        status, payload = await raw.post(headers, body)
                    kind = json.loads(payload).get("status", "") if status == 200 else ""
                except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as exc:
                    status, kind = 0, type(exc).__name__
                    await raw.close()
                latencies.append(time.perf_counter() - started)
                answers.append((webhook_id, status, kind))
        finally:
            if http is not None:
                await http.aclose()
            await raw.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(http) for http in clients))
    return latencies, answers, time.perf_counter() - started


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used so far, summed over cores (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _client(
    url: str, plan: list[tuple[str, bytes]], concurrency: int, client: str
) -> tuple[list[float], list[tuple[str, int, str]], float]:
    """One client process's share; returns latencies, answers and its own CPU seconds."""
    started = sum(os.times()[:2])
    # uvloop (uvicorn's own loop, installed with it) keeps the client's CPU per request down.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        latencies, answers, _ = runner.run(send_all(url, plan, concurrency, client))
    return latencies, answers, sum(os.times()[:2]) - started


def load(
    url: str, plan: list[tuple[str, bytes]], concurrency: int, client: str, processes: int
) -> tuple[list[float], list[tuple[str, int, str]], float, float]:
    """Send ``plan`` from ``processes`` client processes sharing ``concurrency`` between them
    (one process: in this one). Returns latencies, answers, wall seconds, client CPU seconds."""
    started = time.perf_counter()
    if processes <= 1:
        latencies, answers, cpu = _client(url, plan, concurrency, client)
        return latencies, answers, time.perf_counter() - started, cpu
    shares = [plan[i::processes] for i in range(processes)]
    workers = [
        max(1, concurrency // processes + (i < concurrency % processes)) for i in range(processes)
    ]
    latencies, answers, cpu = [], [], 0.0
    with concurrent.futures.ProcessPoolExecutor(processes) as pool:
        started = time.perf_counter()
        for part in pool.map(_client, [url] * processes, shares, workers, [client] * processes):
            latencies += part[0]
            answers += part[1]
            cpu += part[2]
        wall = time.perf_counter() - started
    return latencies, answers, wall, cpu


def run(
    n: int,
    concurrency: int,
    db_url: str | None,
    *,
    client: str = "httpx",
    processes: int = 1,
    duplicates: float = 0.05,
    seed: int = 0,
    keep: bool = False,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    db_url = db_url or f"sqlite:///{workdir / 'whop_pipeline.db'}"
    backend = sa.make_url(db_url).get_backend_name()
    run_id = uuid.uuid4().hex[:8]
    connection = f"bench-{run_id}"
    port = free_port()
    rng = random.Random(seed)

    bodies = [(f"msg_{run_id}_{i:07d}", envelope(i, run_id)) for i in range(n)]
    repeated = rng.sample(range(n), int(n * duplicates))
    plan = list(bodies)
    for index in repeated:  # each repeat lands somewhere after its first send
        plan.insert(rng.randint(index + 1, len(plan)), bodies[index])

    process = start_server(db_url, connection, port, workdir / "receiver.log")
    try:
        url = f"http://127.0.0.1:{port}/webhooks/whop/{connection}"
        server_before, machine_before = cpu_seconds(process.pid), machine_busy_seconds()
        latencies, answers, wall, client_cpu = load(url, plan, concurrency, client, processes)
        server_cpu = cpu_seconds(process.pid) - server_before
        machine_cpu = machine_busy_seconds() - machine_before
    finally:
        process.terminate()
        process.wait(30)

    acknowledged = {webhook_id for webhook_id, status, _ in answers if 200 <= status < 300}
    engine = get_engine(db_url)
    with engine.connect() as conn:
        stored = set(
            conn.execute(
                sa.select(webhook_inbox.c.webhook_id).where(
                    webhook_inbox.c.connection == connection
                )
            ).scalars()
        )
        rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(webhook_inbox)
            .where(webhook_inbox.c.connection == connection)
        ).scalar_one()
    if not keep:
        if backend == "sqlite":
            engine.dispose()
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            with engine.begin() as conn:
                conn.execute(
                    sa.delete(webhook_inbox).where(webhook_inbox.c.connection == connection)
                )
            shutil.rmtree(workdir, ignore_errors=True)
    errors: dict[str, int] = {}
    for _, status, kind in answers:
        if not 200 <= status < 300:
            key = str(status) if status else kind
            errors[key] = errors.get(key, 0) + 1
    p50, p99 = common.percentile(latencies, 0.50) * 1000, common.percentile(latencies, 0.99) * 1000
    rate = len(answers) / wall
    return {
        "backend": backend,
        "client": client,
        "client_processes": processes,
        "deliveries": len(answers),
        "unique": n,
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "deliveries_per_s": round(rate, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "acknowledged": sum(1 for _, status, _ in answers if 200 <= status < 300),
        "acknowledged_unique": len(acknowledged),
        "inbox_rows": rows,
        "lost": len(acknowledged - stored),
        "unacknowledged_but_stored": len(stored - acknowledged),
        "duplicates_resent": len(repeated),
        "answered_duplicate": sum(1 for _, _, kind in answers if kind == "duplicate"),
        "errors": errors,
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_ms_per_delivery": round(server_cpu * 1000 / max(1, len(answers)), 3),
        "client_cpu_s": round(client_cpu, 2),
        # Cores used by everything else on the machine meanwhile: a busy neighbour skews the run.
        "other_cores": round(max(0.0, machine_cpu - server_cpu - client_cpu) / wall, 2),
        "cores": os.cpu_count(),
        "meets_target": rate >= TARGET_RATE
        and p99 < TARGET_P99_MS
        and rows == n
        and not (acknowledged - stored),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="unique deliveries (default 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--db-url", help="pipeline database (default: SQLite in a temp folder)")
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="raw",
        help="a minimal asyncio HTTP/1.1 client that leaves the CPU to the receiver (default; on two "
        "cores httpx's own CPU time is what a run measures) or httpx.AsyncClient",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes sharing --concurrency (one httpx process tops out at one core)",
    )
    parser.add_argument("--duplicates", type=float, default=0.05, help="share re-sent (0.05)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the rows and the temp folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(
        args.n,
        args.concurrency,
        args.db_url,
        client=args.client,
        processes=args.processes,
        duplicates=args.duplicates,
        seed=args.seed,
        keep=args.keep,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['backend']}: {result['deliveries']} deliveries ({result['unique']} unique, "
            f"{result['duplicates_resent']} re-sent) at concurrency {result['concurrency']} "
            f"from the {result['client']} client ({result['client_processes']} process(es)) "
            f"in {result['seconds']} s\n"
            f"  {result['deliveries_per_s']} deliveries/s; latency p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms\n"
            f"  acknowledged {result['acknowledged']} ({result['acknowledged_unique']} unique); "
            f"inbox rows {result['inbox_rows']}; lost {result['lost']}; "
            f"answered duplicate {result['answered_duplicate']}; errors {result['errors'] or 0}\n"
            f"  CPU: receiver {result['server_cpu_s']} s "
            f"({result['server_cpu_ms_per_delivery']} ms per delivery), client "
            f"{result['client_cpu_s']} s, other processes {result['other_cores']} of "
            f"{result['cores']} cores\n"
            f"  target (>= {TARGET_RATE:.0f}/s, p99 < {TARGET_P99_MS:.0f} ms, zero lost): "
            f"{'met' if result['meets_target'] else 'MISSED'}"
        )
    return 0 if result["lost"] == 0 and result["inbox_rows"] == result["unique"] else 1


if __name__ == "__main__":
    sys.exit(main())
