"""Run every benchmark in sequence with its defaults and print each one's summary.

Each benchmark runs in a process of its own: peak RSS is per process, so one benchmark's memory never
shows up in another's numbers.

    uv run python -m benchmarks                       # all of them (large dataset; takes a while)
    uv run python -m benchmarks --only extract load   # a selection, by short name
    uv run python -m benchmarks --json                # each benchmark prints one JSON object
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
# Run in this order; benchmarks other people add (bench_*.py) follow, alphabetically.
ORDER = (
    "sandbox_dataset",
    "extract",
    "load",
    "receiver",
    "webhook_latency",
    "connections",
    "health",
)


def available() -> list[str]:
    found = {path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py")}
    return [name for name in ORDER if name in found] + sorted(found - set(ORDER))


def run_one(name: str, extra: list[str]) -> tuple[int, float]:
    command = [sys.executable, "-m", f"benchmarks.bench_{name}", *extra]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=HERE.parent, check=False)
    return completed.returncode, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=", ".join(names))
    parser.add_argument("--skip", nargs="+", choices=names, metavar="NAME", default=[])
    parser.add_argument("--json", action="store_true", help="pass --json to every benchmark")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [n for n in (args.only or names) if n not in args.skip]
    extra = ["--json"] if args.json else []
    outcomes: list[tuple[str, int, float]] = []
    for name in chosen:
        print(f"\n=== bench_{name} ===", file=sys.stderr if args.json else sys.stdout, flush=True)
        code, seconds = run_one(name, extra)
        outcomes.append((name, code, seconds))
    report = sys.stderr if args.json else sys.stdout
    print("\n=== summary ===", file=report)
    for name, code, seconds in outcomes:
        verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"  bench_{name:<18} {seconds:>7.1f} s  {verdict}", file=report)
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
