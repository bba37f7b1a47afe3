"""Shared helpers of the benchmarks: the sandbox in a separate process, its control endpoints, the
pipeline database, memory and step timings of this process, and printing results.

The emulators run in a child process (``whop-pipeline sandbox``) so that this process's peak RSS is
the pipeline's own: the large dataset and the Twenty records never live here. Anything that needs a
whole dump of the emulators (hundreds of MB of JSON) is read in a short-lived worker process too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Neither reads pipeline settings at import, so they may come before prepare_environment().
from whop_pipeline.sandbox.common import free_port
from whop_pipeline.sandbox.readings import live_records

# The sandbox command serves a dataset that starts on this day; the partitions must match it.
SANDBOX_START_DATE = "2025-01-01"
FAST_WHOP_PER_SECOND = 1_000_000
# The Twenty emulator also enforces Twenty's short bucket (100 calls per second) whatever the
# per-minute limit; the client is paced a little under it so that the benchmark never waits on 429s.
FAST_TWENTY_PER_MINUTE = 5_400
FAST_TWENTY_SERVER_PER_MINUTE = 1_000_000
# What ``run_sync`` passes too: Dagster's console logger at WARNING, not one line per event.
QUIET_RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WHOP_PAGE = 100
TWENTY_BATCH = 200


def prepare_environment(dagster_switches: bool = True) -> dict[str, str]:
    """Settings read when pipeline modules are imported: set them before importing any. Also the
    project's Dagster run-time switches (``whop_pipeline.orchestration.runtime``), as ``run_sync``
    applies them; without ``dagster_switches`` (``--no-dagster-switches``) they are set to ``0``
    (off), so that ``run_sync``'s own ``apply()`` keeps them off and the benchmark shows Dagster
    without them. Returns the switches' values in effect."""
    os.environ["WHOP_SYNC_START_DATE"] = SANDBOX_START_DATE
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    from whop_pipeline.orchestration import runtime

    if dagster_switches:
        runtime.apply()
    else:
        for name in runtime.DAGSTER_RUNTIME_ENV:
            os.environ[name] = "0"
    return dagster_switches_in_effect()


def dagster_switches_in_effect() -> dict[str, str]:
    """The Dagster run-time switches' values in this process's environment ("" when unset)."""
    from whop_pipeline.orchestration import runtime

    return {name: os.environ.get(name, "") for name in runtime.DAGSTER_RUNTIME_ENV}


def describe_switches(values: dict[str, str]) -> str:
    """``on``/``off``/``partly on`` with the values, for a benchmark's header line."""
    enabled = [value.strip().lower() not in {"", "0", "false", "none"} for value in values.values()]
    state = "on" if all(enabled) else "off" if not any(enabled) else "partly on"
    shown = ", ".join(f"{name}={value or 'unset'}" for name, value in values.items())
    return f"Dagster switches {state} ({shown})"


# --- memory ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of ``values`` (``share`` in [0, 1])."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``getrusage``; kB on Linux, bytes on macOS).

    Linux carries ``ru_maxrss`` across ``exec``: a process started by a large parent reports that
    parent's peak. The benchmarks are started by ``uv run`` or ``python -m benchmarks`` (both
    small), so the number is their own."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def current_rss_mb(pid: int | str = "self") -> float | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def process_peak_rss_mb(pid: int) -> float | None:
    """Peak RSS of another process (Linux ``VmHWM``), or None where that is not available."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else None


class RssSampler:
    """Samples this process's RSS on a background thread, so a peak can be tied to the step that
    was running at the time (``peak_between``)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = current_rss_mb()
            if rss is not None:
                self.samples.append((time.time(), rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float | None:
        values = [mb for t, mb in self.samples if start <= t <= end]
        return max(values) if values else None


# --- the sandbox in its own process ------------------------------------------------------------


def _pipeline_command() -> list[str]:
    script = Path(sys.executable).with_name("whop-pipeline")
    if script.exists():
        return [str(script)]
    found = shutil.which("whop-pipeline")
    if found:
        return [found]
    return [sys.executable, "-m", "whop_pipeline.cli"]


@dataclass
class SandboxProcess:
    """``whop-pipeline sandbox`` running in a child process, and its control endpoints."""

    process: subprocess.Popen[bytes]
    dataset: str
    whop_root: str
    twenty_url: str
    env: dict[str, str]
    started_s: float
    workdir: tempfile.TemporaryDirectory[str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    def whop_stats(self) -> dict[str, Any]:
        return self._get(f"{self.whop_root}/_sandbox/stats")

    def twenty_stats(self) -> dict[str, Any]:
        return self._get(f"{self.twenty_url}/_sandbox/stats")

    def whop_dataset(self) -> dict[str, Any]:
        """Account, counts, size and seed of the served dataset."""
        return self._get(f"{self.whop_root}/_sandbox/dump")

    def reset_stats(self) -> None:
        for root in (self.whop_root, self.twenty_url):
            self.http.post(f"{root}/_sandbox/reset").raise_for_status()

    def update_membership(self, membership_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(
            f"{self.whop_root}/_sandbox/memberships/{membership_id}", json=fields
        )
        response.raise_for_status()
        return response.json()

    def peak_rss_mb(self) -> float | None:
        return process_peak_rss_mb(self.process.pid)

    def _get(self, url: str) -> dict[str, Any]:
        response = self.http.get(url)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.workdir.cleanup()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox_process(
    dataset: str,
    *,
    twenty_rate_limit: float = FAST_TWENTY_SERVER_PER_MINUTE,
    seed: int = 0,
    scale: int = 1,
    timeout: float = 300.0,
) -> SandboxProcess:
    """Start ``whop-pipeline sandbox`` on free ports and wait until both emulators answer."""
    whop_port, twenty_port = free_port(), free_port()
    workdir = tempfile.TemporaryDirectory(prefix="bench-sandbox-")
    out_path, err_path = Path(workdir.name, "stdout"), Path(workdir.name, "stderr")
    command = [
        *_pipeline_command(),
        "sandbox",
        "--dataset", dataset,
        "--seed", str(seed),
        "--scale", str(scale),
        "--whop-port", str(whop_port),
        "--twenty-port", str(twenty_port),
        "--twenty-rate-limit", str(twenty_rate_limit),
    ]  # fmt: skip
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        text = out_path.read_text(errors="replace")
        if "Control:" in text:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            raise RuntimeError(
                f"the sandbox did not start ({' '.join(command)}):\n"
                f"{err_path.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.2)
    env = dict(re.findall(r"^export (\w+)=(.*)$", text, flags=re.MULTILINE))
    sandbox = SandboxProcess(
        process=process,
        dataset=dataset,
        whop_root=env["WHOP_API_BASE_URL"].removesuffix("/api/v1"),
        twenty_url=env["TWENTY_API_URL"],
        env=env,
        started_s=0.0,
        workdir=workdir,
    )
    try:
        while True:  # both servers accept as soon as the description is printed; make sure
            try:
                sandbox.whop_stats(), sandbox.twenty_stats()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    except Exception:
        sandbox.stop()
        raise
    sandbox.started_s = time.perf_counter() - started
    return sandbox


# --- whole dumps, read in a worker process --------------------------------------------------------


def in_worker(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in a fresh process: its memory never counts towards this one's."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _count_created(
    whop_root: str, kind: str, windows: Sequence[tuple[str, str]]
) -> tuple[int, list[int]]:
    response = httpx.get(f"{whop_root}/_sandbox/dump/{kind}", timeout=600)
    response.raise_for_status()
    created = [_parse_time(row["created_at"]) for row in response.json()["data"]]
    counts = []
    for after, before in windows:
        lo, hi = _parse_time(after), _parse_time(before)
        counts.append(sum(1 for moment in created if lo < moment < hi))  # both bounds exclusive
    return len(created), counts


def created_in_windows(
    whop_root: str, kind: str, windows: Sequence[tuple[dt.datetime, dt.datetime]]
) -> tuple[int, list[int]]:
    """Rows of ``kind`` in the emulator's dataset, and how many fall in each (after, before)
    window with both bounds exclusive (the list endpoints' rule). Read from the emulator's dump in a
    worker process."""
    iso = [(a.isoformat(), b.isoformat()) for a, b in windows]
    return in_worker(_count_created, whop_root, kind, iso)


# Whop listing → (the dataset's object, whether a sync reads it by created_at window).
WHOP_LISTINGS = {
    "members": ("members", False),
    "products": ("products", False),
    "variants": ("plans", False),
    "memberships": ("memberships", True),
    "payments": ("payments", True),
}


def whop_minimum(
    sandbox: SandboxProcess, windows: Sequence[tuple[dt.datetime, dt.datetime]]
) -> list[tuple[dict[str, int], dict[str, int]]]:
    """Per window: the rows each Whop listing must return to a sync reading that window (members,
    products and variants in full) and the fewest calls that return them (pages of 100), counted
    from the emulator's own dataset, not from what the pipeline fetched. Each windowed listing's
    dump is read once, whatever the number of windows."""
    counts = sandbox.whop_dataset()["counts"]
    rows: list[dict[str, int]] = [{} for _ in windows]
    for listing, (kind, windowed) in WHOP_LISTINGS.items():
        if windowed:
            _total, per_window = created_in_windows(sandbox.whop_root, kind, windows)
        else:
            per_window = [counts[kind]] * len(windows)
        for window_rows, n in zip(rows, per_window, strict=True):
            window_rows[listing] = n
    return [(r, {listing: pages(n, WHOP_PAGE) for listing, n in r.items()}) for r in rows]


def _live_counts(twenty_url: str) -> dict[str, int]:
    response = httpx.get(f"{twenty_url}/_sandbox/dump", timeout=600)
    response.raise_for_status()
    dump = response.json()
    return {plural: len(live_records(dump, plural)) for plural in dump}


def twenty_live_counts(twenty_url: str) -> dict[str, int]:
    """Records per object in the Twenty emulator (soft-deleted ones left out), from its dump."""
    return in_worker(_live_counts, twenty_url)


# --- API call arithmetic ----------------------------------------------------------------------


def sync_parser(description: str) -> argparse.ArgumentParser:
    """The options every sync benchmark takes: dataset, pipeline database, output format."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", choices=("tiny", "small", "large"), default="large")
    parser.add_argument(
        "--scale", type=int, default=1, help="dataset scale: members, memberships, payments x N"
    )
    parser.add_argument(
        "--db-url",
        help="pipeline database (default: SQLite in a temporary folder); a Postgres URL gets a "
        "fresh schema, dropped afterwards",
    )
    parser.add_argument("--keep", action="store_true", help="keep the Postgres schema(s)")
    parser.add_argument(
        "--dagster-db-url",
        help="Dagster instance storage (runs, event log, schedules) on this Postgres database, in a "
        "fresh schema dropped afterwards (default: SQLite in a temporary folder), e.g. "
        "postgresql://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument(
        "--no-dagster-switches",
        dest="dagster_switches",
        action="store_false",
        help="run without the project's Dagster run-time switches "
        "(whop_pipeline.orchestration.runtime), to show the difference they make",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def pages(rows: int, page: int) -> int:
    """Calls a paginated read or a batched write of ``rows`` needs (a listing costs at least one)."""
    return max(1, math.ceil(rows / page))


def batches(rows: int, size: int = TWENTY_BATCH) -> int:
    return math.ceil(rows / size)


def ratio(value: float, floor: float) -> float | None:
    if floor == 0:
        return None if value else 1.0
    return value / floor


# --- the pipeline database and the Dagster instance ---------------------------------------------


@contextlib.contextmanager
def pipeline_database(db_url: str | None, keep: bool = False) -> Iterator[str]:
    """A fresh, empty pipeline database: SQLite in a temporary folder, or (for a Postgres URL) a new
    schema of that database, dropped afterwards unless ``keep``."""
    if not db_url:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as folder:
            yield f"sqlite:///{Path(folder) / 'pipeline.db'}"
        return
    import sqlalchemy as sa

    from whop_pipeline_tests.postgres import scratch_schema

    if sa.make_url(db_url).get_backend_name() != "postgresql":
        yield db_url
        return
    with scratch_schema(db_url, "bench", keep=keep) as url:
        yield url


def describe_db(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def dagster_instance(db_url: str | None = None, keep: bool = False) -> Iterator[Any]:
    """A persistent Dagster instance in a temporary folder: SQLite run and event storage on disk,
    as a local deployment has (an ephemeral instance would keep every event in this process's
    memory); or, with ``db_url`` (a Postgres URL), dagster-postgres storage as production has
    (``deploy/dagster.postgres.yaml``), in a new schema of that database, dropped afterwards unless
    ``keep``. Artifacts and compute logs stay in the temporary folder either way."""
    import dagster as dg

    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as folder:
        if not db_url:
            instance = dg.DagsterInstance.local_temp(tempdir=folder)
            try:
                yield instance
            finally:
                instance.dispose()
            return
        import sqlalchemy as sa

        from whop_pipeline_tests.postgres import scratch_schema

        if sa.make_url(db_url).get_backend_name() != "postgresql":
            raise ValueError(f"--dagster-db-url must be a Postgres URL, not {db_url!r}")
        with scratch_schema(db_url, "bench_dagster", keep=keep) as url:
            storage = {"postgres": {"postgres_url": url}}
            instance = dg.DagsterInstance.local_temp(tempdir=folder, overrides={"storage": storage})
            try:
                yield instance
            finally:
                instance.dispose()  # before the schema is dropped


def describe_dagster_storage(instance: Any) -> str:
    """Which storage the instance's event log really is: the class, and for Postgres the database
    and schema (password hidden)."""
    import urllib.parse

    import sqlalchemy as sa

    storage = instance.event_log_storage
    kind = type(storage).__name__
    postgres_url = getattr(storage, "postgres_url", None)
    if not postgres_url:
        return f"Dagster storage SQLite in a temporary folder ({kind})"
    url = sa.make_url(postgres_url)
    options = urllib.parse.unquote(str(url.query.get("options", "")))
    schema = options.removeprefix("-csearch_path=") if "search_path" in options else "public"
    where = url.set(query={}).render_as_string(hide_password=True)
    return f"Dagster storage Postgres, schema {schema} of {where} ({kind})"


# --- where a run's time went ------------------------------------------------------------------


@dataclass
class StepTiming:
    """One step of a run, from its events. ``work`` runs from the step's start to its first
    materialization event: the asset's own code, loading its inputs and storing its output (the I/O
    manager runs before Dagster logs the materializations). ``bookkeeping`` is the rest: Dagster
    recording one materialization event per partition, then the step's end."""

    step: str
    start: float
    first_materialization: float
    end: float
    materializations: int

    @property
    def total_s(self) -> float:
        return self.end - self.start

    @property
    def work_s(self) -> float:
        return self.first_materialization - self.start

    @property
    def bookkeeping_s(self) -> float:
        return self.end - self.first_materialization


@dataclass
class RunTiming:
    """A run's events, with the caller's own clock around it (``called``/``returned``, epoch s)."""

    called: float
    run_start: float
    run_end: float
    returned: float
    steps: dict[str, StepTiming]
    planned_events: int = 0  # ASSET_MATERIALIZATION_PLANNED: one per asset and partition

    @property
    def run_s(self) -> float:
        return self.run_end - self.run_start

    @property
    def before_run_s(self) -> float:
        """From the call to RUN_START: building the job, creating the run, planning."""
        return self.run_start - self.called

    @property
    def after_run_s(self) -> float:
        """From RUN_SUCCESS (or failure) until the call returned."""
        return self.returned - self.run_end

    @property
    def between_steps_s(self) -> float:
        """Inside the run but in no step: resource set-up, step scheduling, run teardown."""
        return self.run_s - sum(s.total_s for s in self.steps.values())

    def work_s(self, steps: Sequence[str] | None = None) -> float:
        chosen = self.steps.values() if steps is None else [self.steps[s] for s in steps]
        return sum(s.work_s for s in chosen)

    def bookkeeping_s(self, steps: Sequence[str] | None = None) -> float:
        chosen = self.steps.values() if steps is None else [self.steps[s] for s in steps]
        return sum(s.bookkeeping_s for s in chosen)


def run_timing(instance: Any, run_id: str, called: float, returned: float) -> RunTiming:
    """Step timings of a finished run, read back from the instance's event log; ``called`` and
    ``returned`` are the epoch seconds around the call that ran it."""
    import dagster as dg

    kinds = dg.DagsterEventType
    wanted = {
        kinds.RUN_START,
        kinds.RUN_SUCCESS,
        kinds.RUN_FAILURE,
        kinds.STEP_START,
        kinds.STEP_SUCCESS,
        kinds.STEP_FAILURE,
        kinds.ASSET_MATERIALIZATION,
        kinds.ASSET_MATERIALIZATION_PLANNED,
    }
    planned = 0
    run_start = run_end = 0.0
    starts: dict[str, float] = {}
    first_materialized: dict[str, float] = {}
    ends: dict[str, float] = {}
    materializations: dict[str, int] = {}
    for entry in instance.all_logs(run_id, of_type=wanted):
        event = entry.dagster_event
        kind, step, when = event.event_type, event.step_key, entry.timestamp
        if kind == kinds.RUN_START:
            run_start = when
        elif kind in (kinds.RUN_SUCCESS, kinds.RUN_FAILURE):
            run_end = when
        elif kind == kinds.STEP_START:
            starts[step] = when
        elif kind in (kinds.STEP_SUCCESS, kinds.STEP_FAILURE):
            ends[step] = when
        elif kind == kinds.ASSET_MATERIALIZATION:
            materializations[step] = materializations.get(step, 0) + 1
            first_materialized.setdefault(step, when)
        elif kind == kinds.ASSET_MATERIALIZATION_PLANNED:
            planned += 1
    steps = {
        step: StepTiming(
            step=step,
            start=start,
            first_materialization=first_materialized.get(step, ends.get(step, start)),
            end=ends.get(step, start),
            materializations=materializations.get(step, 0),
        )
        for step, start in starts.items()
    }
    return RunTiming(
        called=called,
        run_start=run_start,
        run_end=run_end,
        returned=returned,
        steps=steps,
        planned_events=planned,
    )


# --- output -----------------------------------------------------------------------------------


def rounded(value: Any, digits: int = 2) -> Any:
    """Floats rounded for printing and JSON, recursively."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}×"


def emit(results: dict[str, Any], lines: Sequence[str], as_json: bool) -> None:
    """Print the summary lines, or one JSON object with every measured number."""
    if as_json:
        print(json.dumps(rounded(results), indent=2, default=str))
    else:
        print("\n".join(lines))
    sys.stdout.flush()


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def read_window(first: str, last: str) -> tuple[dt.datetime, dt.datetime]:
    """What the partitioned extract assets ask Whop for over ``first``…``last``: the days' span,
    widened by the partition overlap on both sides (``whop_pipeline.whop.assets``)."""
    from whop_pipeline.whop.assets import WINDOW_OVERLAP

    start = dt.datetime.fromisoformat(first).replace(tzinfo=dt.UTC)
    end = dt.datetime.fromisoformat(last).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    return start - WINDOW_OVERLAP, end + WINDOW_OVERLAP


@contextlib.contextmanager
def scratch_dagster_database(admin_url: str, keep: bool = False) -> Iterator[dict[str, str]]:
    """A new, empty Postgres database on ``admin_url``'s server for a Dagster instance configured by
    ``deploy/dagster.postgres.yaml``: yields the ``DAGSTER_PG_*`` variables that name it. A database
    rather than a schema because that file (production's) takes a database name, not a search path.
    Dropped afterwards (its remaining connections forced off) unless ``keep``."""
    import uuid

    import sqlalchemy as sa

    url = sa.make_url(admin_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"--dagster-db-url must be a Postgres URL, not {admin_url!r}")
    database = f"bench_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    try:
        yield {
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USERNAME": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": database,
        }
    finally:
        if not keep:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
