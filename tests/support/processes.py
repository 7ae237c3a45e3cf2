"""The archiver's own processes (`archiver web|worker|scheduler`), started for real by tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.ports import free_port, wait_for_port
from worker.edge.web import paths


class ArchiverProcesses:
    """Starts archiver commands with one environment; keeps each one's log in a file."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "ARCHIVER_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.web_port: int | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen([sys.executable, "-m", "worker.edge.cli.app", *args], env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT, cwd=self.log_dir)
        self.running[name] = process
        return process

    def start_web(self, wait: bool = True) -> str:
        """The web receiver; with `wait` (the default), once it listens."""
        self.web_port = self.web_port or free_port()
        self.start("web", "web", "--host", "127.0.0.1", "--port", str(self.web_port))
        if wait:
            self.wait_for_web()
        return self.webhook_url

    def wait_for_web(self) -> None:
        assert self.web_port is not None
        wait_for_port(self.web_port, timeout=30)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}{paths.WEBHOOK}"

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--concurrency", str(concurrency))

    def start_scheduler(self, wait: bool = True) -> subprocess.Popen[bytes]:
        """The scheduler; with `wait` (the default), once its first reconciliation with Stream's
        listings is done: files a test adds to the fake Stream afterwards are then first seen through
        their webhooks."""
        process = self.start("scheduler", "scheduler")
        if wait:
            self.wait_for_scheduler()
        return process

    def wait_for_scheduler(self) -> None:
        log = self.log_dir / "scheduler.log"
        wait_until(lambda: '"reconcile_finished"' in log.read_text(errors="replace"), timeout=30,
                   message="the scheduler's first reconciliation")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.running.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        """SIGTERM to every process at once, then wait for each (one by one, each warm shutdown of a
        Celery worker or the scheduler adds up)."""
        processes = [p for p in self.running.values() if p.poll() is None]
        self.running.clear()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a one-shot archiver command and return its result."""
        return subprocess.run([sys.executable, "-m", "worker.edge.cli.app", *args], env=self.env, capture_output=True,
                              text=True, timeout=60, cwd=self.log_dir, check=False)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.web_port}{path}", timeout=10)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.2,
               message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
