"""What a worker process needs to run transfers, built once per process from the settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from config import ArchiveConfig, ConfigError, Settings
from worker.errors import StorageRefused, StorageUnknown
from worker.intake.permits import LedgerPermits
from worker.ledger.connection import connect_env
from worker.ledger.store import Ledger
from worker.monitoring.stats import Stats
from worker.notify.outbox import routes_json
from worker.storage import Storage
from worker.storage.registry import build_storage
from worker.stream.client import StreamClient
from worker.stream.limits import SharedBudget
from worker.transfer.download import DownloadClient, http_client


@dataclass
class Runtime:
    """Settings, ledger, download client, figures for /metrics and storages of one worker process."""

    settings: Settings
    ledger: Ledger
    http: DownloadClient
    owner: str
    stats: Stats  # one per process: figures kept while Redis is away are added to its next write
    _storages: dict[str, Storage] = field(default_factory=dict)
    _stream: StreamClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, actor: str = "worker") -> Runtime:
        """`actor`: who this process is in the audit log (worker, scheduler, cli)."""
        tuning = settings.archive.transfer
        ledger = Ledger(connect_env(settings.env, name="archiver-worker"), outbox=routes_json(settings.archive),
                        actor=actor)
        return cls(
            settings=settings,
            ledger=ledger,
            http=http_client(
                settings.archive.download_hosts,
                tuning.connect_timeout.total_seconds(),
                tuning.read_timeout.total_seconds(),
                permits=LedgerPermits(ledger),  # `archiver try`'s one-file permissions
                keep_alive=tuning.download_streams,  # one large download's connections serve the next files
            ),
            owner=f"{socket.gethostname()}:{os.getpid()}",
            stats=Stats(ledger.redis, ledger.prefix),
        )

    @property
    def archive(self) -> ArchiveConfig:
        return self.settings.archive

    @property
    def stream(self) -> StreamClient:
        """Stream's REST API, connected on first use."""
        if self._stream is None:
            env = self.settings.env
            budget = SharedBudget(self.ledger.redis, self.archive.api_share, self.ledger.prefix)
            self._stream = StreamClient(env.stream_base_url, env.stream_api_key,
                                        env.stream_api_secret.get_secret_value(), budget=budget,
                                        stats=self.stats)
        return self._stream

    def storage(self, name: str) -> Storage:
        """The storage called `name`, built on first use and kept for the process's life.

        Raises StorageUnknown (transient: retried with backoff) when this process's configuration
        has no storage of that name, e.g. a worker still on the old configuration during a rolling
        deploy; StorageRefused (permanent) when it has it but cannot build it.
        """
        if name not in self._storages:
            try:
                config = self.archive.storage(name)
            except KeyError:
                raise StorageUnknown(f"no storage named {name!r} in this worker's configuration (not deployed "
                                     "here yet, or removed); retried later") from None
            try:
                self._storages[name] = build_storage(config, self.archive.transfer)
            except (ConfigError, ValueError) as exc:
                raise StorageRefused(f"storage {name!r} cannot be used: {exc}") from None
        return self._storages[name]

    def check_storages(self) -> None:
        """Build every configured storage now, so a broken one stops the process at start."""
        for storage in self.archive.effective_storages():
            try:
                self.storage(storage.name)
            except (StorageRefused, StorageUnknown) as exc:
                raise ConfigError(str(exc)) from None

    def close(self) -> None:
        for storage in self._storages.values():
            storage.close()
        self._storages.clear()
        self.http.close()
        if self._stream is not None:
            self._stream.close()
        self.ledger.redis.close()
