"""LocalStorage joins the conformance suite: a root directory in tmp_path; its links, signed tokens served by
the receiver's own ``/files/`` route under uvicorn (the whole `archiver web`: tests/e2e/test_links.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI

from config import ArchiveConfig
from tests.storage.conformance import LONG_NAME_KEY, LinkConformance, ProtectionConformance, Sign, StorageConformance
from tests.support.webserver import serve_in_thread
from worker.edge.web import paths
from worker.edge.web.links import add_files
from worker.ledger.store import Ledger
from worker.links import LinkMaker
from worker.storage.base import Storage
from worker.storage.local.storage import PARTIAL_SUFFIX, LocalStorage

BACKEND = "local"


class TestLocal(StorageConformance):
    refused_keys = frozenset({LONG_NAME_KEY})

    def another_writer(self, storage: Storage, key: str, data: bytes) -> None:
        """A process outside the archiver: one writer of the storage per key is all it expects (the
        next one removes the temporary files of the key's earlier, dead writers)."""
        assert isinstance(storage, LocalStorage)
        storage.path(key).write_bytes(data)

    @pytest.fixture
    def leftovers(self, root: Path) -> Callable[[], list[str]]:
        return lambda: [str(path) for path in root.rglob(f"*{PARTIAL_SUFFIX}")]

    @pytest.fixture
    def raw_keys(self, root: Path) -> Callable[[], list[str]]:
        return lambda: sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


class TestLocalLinks(LinkConformance):
    """Local disk has no store to sign: the receiver serves tokens signed with the ledger's link key."""

    @pytest.fixture
    def sign(self, root: Path, prefix: str, redis_url: str) -> Iterator[Sign]:
        disk = {"name": "disk", "storage_type": "local", "bucket": str(root), "path": prefix}
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        ledger = Ledger(client)
        app = FastAPI()
        serving = LinkMaker(ArchiveConfig.model_validate({"storages": [disk]}), ledger, paths.FILES)
        add_files(app, serving)
        with serve_in_thread(app) as base:
            archive = ArchiveConfig.model_validate({"storages": [disk], "public_url": base})
            maker = LinkMaker(archive, ledger, paths.FILES)

            def sign(key: str, ttl: timedelta) -> str:
                return maker.object_link("disk", key, ttl).url

            yield sign
            maker.close()
        serving.close()
        client.close()


class TestLocalProtection(ProtectionConformance):
    """A commit's version, unprotected probes removed entirely, protection read back (tests/storage/conformance.py)."""
