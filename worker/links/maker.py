"""One archived transfer's object as a short-lived download link, and the local file a link names.

`LinkMaker.link` checks that the transfer is archived and that its object is still there, then has the
object's store sign a URL (`Storage.link`: S3, GCS, Azure), or, for local disk, signs a token that
`archiver web` serves under ``public_url`` (`worker.links.served`). `LinkMaker.served_file` is the
receiver's side: the file a token grants, or nothing. Every link made is logged (``link_made``: the
transfer, storage, key and expiry; never the URL, which is a credential).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from config import ArchiveConfig, ConfigError
from worker.clock import now_ms, rfc3339
from worker.errors import KeyRefused, LinkUnavailable, StorageRefused
from worker.ledger.models import Transfer
from worker.ledger.store import Ledger
from worker.links.served import FileToken, checking_key, read_token, sign_token, signing_key
from worker.storage import Storage
from worker.storage.local import LocalStorage
from worker.storage.registry import build_storage

DEFAULT_TTL = timedelta(minutes=15)  # `archiver link`'s default, and the status page's (within max_link_ttl)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Link:
    """A download URL (a bearer credential until `expires_at`) for the object at `key` in `storage`."""

    url: str
    expires_at: datetime
    storage: str
    key: str


@dataclass(frozen=True)
class ServedFile:
    """A local file a valid token grants: its real path, size, content type (when kept) and name."""

    path: str
    size: int
    content_type: str | None
    filename: str


class LinkMaker:
    """Links to the objects of archived transfers. Storages are built on first use and kept (one
    process may ask from many threads); `close` releases them."""

    def __init__(self, archive: ArchiveConfig, ledger: Ledger, files_path: str) -> None:
        """`files_path`: where `archiver web` serves local files, under ``public_url`` (local files get no
        link when that is not set)."""
        self.archive, self.ledger = archive, ledger
        self.files_url = f"{archive.public_url}{files_path}" if archive.public_url else None
        self._storages: dict[str, Storage] = {}
        self._lock = threading.Lock()

    def storage(self, name: str) -> Storage:
        """The configured storage `name`, built once. Raises LinkUnavailable when this configuration
        has no such storage or cannot build it."""
        with self._lock:
            if name not in self._storages:
                try:
                    self._storages[name] = build_storage(self.archive.storage(name), self.archive.transfer)
                except KeyError:
                    raise LinkUnavailable(f"no storage named {name!r} in this configuration") from None
                except (ConfigError, ValueError, StorageRefused) as exc:
                    raise LinkUnavailable(f"storage {name!r} cannot be used: {exc}") from None
            return self._storages[name]

    def link(self, transfer: Transfer, ttl: timedelta) -> Link:
        """A URL that downloads `transfer`'s object for `ttl`. Raises LinkUnavailable (not archived, or
        see `object_link`), StorageRefused / StorageUnavailable, redis.RedisError."""
        if transfer.state != "archived":
            raise LinkUnavailable(f"transfer {transfer.id} is {transfer.state}, not archived: only an archived "
                                  "file has a download link")
        link = self.object_link(transfer.storage, transfer.key, ttl)
        log.info("link_made", transfer_id=transfer.id, storage=link.storage, key=link.key,
                 expires_at=rfc3339(link.expires_at))  # fmt: skip
        return link

    def object_link(self, storage_name: str, key: str, ttl: timedelta) -> Link:
        """A URL that downloads the object at `key` in storage `storage_name` for `ttl`. Raises
        LinkUnavailable (no such storage, the object gone, a storage that cannot sign, local disk
        without ``public_url``), StorageRefused / StorageUnavailable (the store refused or failed),
        redis.RedisError (local disk: the link key)."""
        storage = self.storage(storage_name)
        try:
            storage.stat(key)
        except FileNotFoundError:
            raise LinkUnavailable(f"{storage.describe()} holds no object {key!r} (any more: deleted or moved "
                                  "behind the archiver's back?)") from None
        local = self._local(storage_name)
        if local is not None:
            url, expires_ms = self._served(local, key, ttl)
        else:
            expires_ms = now_ms() + int(ttl.total_seconds() * 1000)
            url = storage.link(key, ttl)
        return Link(url, datetime.fromtimestamp(expires_ms / 1000, UTC), storage.name, key)

    def _local(self, name: str) -> LocalStorage | None:
        """Storage `name` when it is built-in local disk (``storage_type = "local"``: not a plug-in, even one
        built on LocalStorage), whose files `archiver web` serves; else None. Raises KeyError when this
        configuration has no such storage, LinkUnavailable when it cannot be built."""
        if self.archive.storage(name).storage_type != "local":
            return None
        storage = self.storage(name)
        return storage if isinstance(storage, LocalStorage) else None

    def _served(self, storage: LocalStorage, key: str, ttl: timedelta) -> tuple[str, int]:
        if self.files_url is None:
            raise LinkUnavailable(f"{storage.describe()} is local disk: `archiver web` serves its files, at the "
                                  "address set as public_url, which is not set. Set public_url (top level of "
                                  "the configuration) to the receiver's address as users reach it, e.g. "
                                  "https://archiver.example.com")
        secret, now = signing_key(self.ledger)
        expires_ms = now + int(ttl.total_seconds() * 1000)
        return f"{self.files_url}/{sign_token(secret, FileToken(storage.name, key, expires_ms))}", expires_ms

    def served_file(self, token: str) -> ServedFile | None:
        """The local file `token` grants; None for a token not made with the ledger's link key, altered,
        or expired (which, no one is told). Raises FileNotFoundError when a valid token names a
        storage that is not a local one of this configuration any more, or an object that is gone;
        redis.RedisError."""
        secret, now = checking_key(self.ledger)
        grant = read_token(secret, token, now) if secret is not None else None
        if grant is None:
            return None
        try:
            storage = self._local(grant.storage)
            if storage is None:
                raise FileNotFoundError(f"{grant.storage!r} is not a local storage here")
            path = storage.path(grant.key)  # the storage's own check: inside its directory, no link out
            stored = storage.stat(grant.key)
        except (KeyError, KeyRefused, StorageRefused, LinkUnavailable) as exc:
            raise FileNotFoundError(str(exc)) from None
        return ServedFile(os.path.realpath(path), stored.size, stored.content_type, path.name)

    def close(self) -> None:
        """Close every storage built. Idempotent."""
        with self._lock:
            storages, self._storages = list(self._storages.values()), {}
        for storage in storages:
            storage.close()
