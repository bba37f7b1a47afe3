"""Run the Dagster daemon (sensors, run queue, launcher) in a subprocess against a throwaway
instance, as a deployment would, for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from whop_pipeline.orchestration.runtime import DAGSTER_RUNTIME_ENV

ROOT = Path(__file__).resolve().parents[1]


class Daemon:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        self.home = home
        self.log_path = home / "daemon.log"
        self.env = {**DAGSTER_RUNTIME_ENV, **os.environ, **env, "DAGSTER_HOME": str(home)}
        self.process: subprocess.Popen | None = None

    def start(self) -> Daemon:
        executable = Path(sys.executable).parent / "dagster-daemon"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(executable), "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # The daemon and its code server share a session: interrupt them together.
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
