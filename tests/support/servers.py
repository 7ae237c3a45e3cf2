"""Starting an emulator (moto_server, Azurite, the GCS emulator) as a process that serves one port."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support.ports import wait_for_port


def start_process(command: Sequence[str], port: int, *, cwd: Path | None = None) -> Callable[[], None]:
    """Start `command` and wait until it accepts connections on `port` of 127.0.0.1 (or raise
    TimeoutError after 30 s, having stopped it); return a function that stops it (terminate, then kill)."""
    # its output goes nowhere: emulators log every request, and a pipe nobody reads would fill and block them
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    try:
        wait_for_port(port, timeout=30)
    except TimeoutError:
        stop()
        raise
    return stop
