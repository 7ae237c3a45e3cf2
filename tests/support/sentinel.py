"""A Redis master, one replica and one Sentinel watching them: real processes on free ports.

    with SentinelSetup(tmp_path) as ha:
        client = connect(ha.url, sentinel_master=ha.master_name)
        ha.failover()  # the replica becomes the master; the old master follows it
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.support.ports import free_port, wait_for_port

MASTER_NAME = "archiver-test"


class SentinelSetup:
    """Starts a master, a replica of it and a Sentinel (quorum 1); `failover()` swaps the roles."""

    def __init__(self, directory: Path, master_name: str = MASTER_NAME) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.binary, self.directory, self.master_name = binary, directory, master_name
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The Sentinel's URL, as REDIS_URL / ARCHIVER_BROKER_URL take it."""
        return f"sentinel://127.0.0.1:{self.ports['sentinel']}/0"

    def _redis(self, name: str, *extra: str) -> None:
        workdir = self.directory / name
        workdir.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.ports[name]), "--bind", "127.0.0.1", "--dir", str(workdir),
                   "--save", "", "--appendonly", "yes", "--maxmemory-policy", "noeviction",
                   "--logfile", str(workdir / "redis.log"), *extra]
        self.processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(self.ports[name])

    def start(self) -> Self:
        self._redis("master")
        self._redis("replica", "--replicaof", "127.0.0.1", str(self.ports["master"]))
        workdir = self.directory / "sentinel"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "sentinel.conf"  # Sentinel rewrites its own configuration file
        config.write_text(
            f"port {self.ports['sentinel']}\nbind 127.0.0.1\ndir {workdir}\nlogfile {workdir / 'sentinel.log'}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.ports['master']} 1\n"
            f"sentinel known-replica {self.master_name} 127.0.0.1 {self.ports['replica']}\n"
            f"sentinel down-after-milliseconds {self.master_name} 2000\n"
            f"sentinel failover-timeout {self.master_name} 10000\n"
        )
        self.processes.append(subprocess.Popen([self.binary, str(config), "--sentinel"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(self.ports["sentinel"])
        return self

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.ports["sentinel"], decode_responses=True, socket_timeout=5)

    def master_port(self) -> int:
        with self.sentinel() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(port)

    def master(self) -> redis.Redis:
        """A plain client of whichever server is master now."""
        return redis.Redis(port=self.master_port(), decode_responses=True)

    def _replica_known(self) -> bool:
        with self.sentinel() as client:
            replicas = client.sentinel_slaves(self.master_name)  # parsed into dicts by every redis-py
        return any(r.get("master-link-status") == "ok" and not r.get("is_disconnected") for r in replicas)

    def failover(self) -> int:
        """Make the replica the master (SENTINEL FAILOVER); wait until it is master and the old master its
        replica (until then the old one still takes writes, which the swap then drops); the new port."""
        self._wait(self._replica_known, "the Sentinel to see the replica in sync")
        before = self.master_port()
        with self.sentinel() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)

        def swapped() -> bool:
            port = self.master_port()
            if port == before:
                return False
            with redis.Redis(port=port) as new, redis.Redis(port=before) as old:
                return bytes(new.role()[0]) == b"master" and bytes(old.role()[0]) == b"slave"

        self._wait(swapped, "the replica to be promoted and the old master to follow it")
        return self.master_port()

    def _wait(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
