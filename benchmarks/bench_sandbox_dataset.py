"""Generate a sandbox Whop dataset, serve it with the emulator and page through it over HTTP the way
the pipeline does (``first=100``, following ``has_next_page``).

Prints generation time, peak RSS (``resource.getrusage``; the server runs in this process, so it
covers the dataset, the emulator and the client), record counts, and per resource the pages,
rows, seconds and rows per second of a full scan, plus an incremental ``created_after`` window.

    uv run python benchmarks/bench_sandbox_dataset.py              # large: 20k/25k/100k
    uv run python benchmarks/bench_sandbox_dataset.py --size small --json
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from benchmarks import common
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.sandbox.whop import serve_whop

API_KEY = "bench-sandbox-key"
RESOURCES = ("members", "memberships", "payments", "products", "variants")


def scan(
    client: httpx.Client, base: str, path: str, params: dict[str, Any]
) -> tuple[int, int, float]:
    """Page through ``path``; returns (pages, rows, seconds)."""
    pages = rows = 0
    after: str | None = None
    started = time.perf_counter()
    while True:
        query = {**params, **({"after": after} if after else {})}
        response = client.get(f"{base}{path}", params=query)
        response.raise_for_status()
        body = response.json()
        pages += 1
        rows += len(body["data"])
        if not body["page_info"]["has_next_page"]:
            return pages, rows, time.perf_counter() - started
        after = body["page_info"]["end_cursor"]


def run(size: str, seed: int, first: int) -> dict[str, Any]:
    started = time.perf_counter()
    dataset = generate_dataset(size, seed=seed)  # type: ignore[arg-type]
    generation_s = time.perf_counter() - started
    rss_after_generation = common.peak_rss_mb()
    counts = dataset.counts()
    emulator, server = serve_whop(dataset, api_key=API_KEY)
    base = f"{server.url}/api/v1"
    results: dict[str, Any] = {
        "size": size,
        "seed": seed,
        "first": first,
        "generation_s": round(generation_s, 2),
        "peak_rss_mb_after_generation": round(rss_after_generation, 1),
        "counts": counts,
        "scans": {},
    }
    headers = {"Authorization": f"Bearer {API_KEY}", "Api-Version-Date": "2026-10-15-1"}
    try:
        with httpx.Client(headers=headers, timeout=60) as client:
            account = {"account_id": dataset.account.id, "first": first}
            for name in RESOURCES:
                pages, rows, seconds = scan(client, base, f"/{name}", account)
                expected = counts["plans" if name == "variants" else name]
                assert rows == expected, f"{name}: scanned {rows} rows, dataset has {expected}"
                assert pages == common.pages(expected, first), f"{name}: {pages} pages"
                results["scans"][name] = {
                    "pages": pages,
                    "rows": rows,
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(rows / seconds) if seconds else None,
                }
            since = (dataset.now - timedelta(days=7)).isoformat()
            window = {**account, "created_after": since, "order": "created_at", "direction": "asc"}
            pages, rows, seconds = scan(client, base, "/payments", window)
            results["scans"]["payments_last_7_days"] = {
                "pages": pages,
                "rows": rows,
                "seconds": round(seconds, 2),
            }
        stats = emulator.stats.snapshot()
        results["api_calls"] = stats["total"]
    finally:
        server.stop()
        emulator.close()
    results["peak_rss_mb"] = round(common.peak_rss_mb(), 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small", "large"), default="large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--first", type=int, default=100, help="page size (the emulator caps it at 100)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    args = parser.parse_args(argv)
    results = run(args.size, args.seed, args.first)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    counts = ", ".join(f"{k} {v:,}" for k, v in results["counts"].items())
    print(
        f"whop sandbox dataset: size={args.size} seed={args.seed} at {datetime.now(UTC):%Y-%m-%d %H:%M}Z"
    )
    print(f"  generation: {results['generation_s']:.2f} s   ({counts})")
    print(f"  peak RSS after generation: {results['peak_rss_mb_after_generation']:.0f} MB")
    print(f"  full scans with first={args.first}:")
    for name, scan_result in results["scans"].items():
        rate = f"{scan_result['rows_per_s']:>8,} rows/s" if scan_result.get("rows_per_s") else ""
        print(
            f"    {name:<22} {scan_result['rows']:>8,} rows {scan_result['pages']:>6,} pages "
            f"{scan_result['seconds']:>7.2f} s {rate}"
        )
    print(f"  API calls served: {results['api_calls']:,}")
    print(f"  peak RSS (dataset + emulator + client): {results['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
