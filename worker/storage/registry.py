"""From a ``storage_type`` to a ready `Storage`: built-in backends, imported lazily, then plug-ins.

A plug-in is a distribution declaring an entry point in the group ``archiver.storages`` whose name
is the storage type and whose value is its `Storage` subclass, e.g. in its ``pyproject.toml``::

    [project.entry-points."archiver.storages"]
    ftp = "archiver_ftp:FTPStorage"

A plug-in's own settings come from the storage's ``options`` table (``[storages.options]``).

Every backend class offers ``from_config(config: StorageConfig, tuning: TransferTuning) -> Self``.
Importing a backend's SDK happens only when a storage of that type is built.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Protocol, cast

from config import ConfigError, StorageConfig, TransferTuning
from worker.storage.base import Storage
from worker.storage.keys import check_key

__all__ = ["ENTRY_POINT_GROUP", "StorageClass", "build_storage", "check_key", "storage_class"]

ENTRY_POINT_GROUP = "archiver.storages"

BUILTIN: dict[str, str] = {
    "local": "worker.storage.local:LocalStorage",
    "s3": "worker.storage.s3:S3Storage",
    "gcs": "worker.storage.gcs:GCSStorage",
    "abs": "worker.storage.azure:AzureStorage",
}


class StorageClass(Protocol):
    """What the registry needs from a backend class."""

    def from_config(self, config: StorageConfig, tuning: TransferTuning) -> Storage: ...


def _load(target: str) -> object:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _find(storage_type: str, name: str) -> object:
    if storage_type in BUILTIN:
        return _load(BUILTIN[storage_type])
    plugins = entry_points(group=ENTRY_POINT_GROUP).select(name=storage_type)
    for plugin in plugins:
        return plugin.load()
    known = ", ".join(sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))}))
    raise ConfigError(
        f"storages.{name}: unknown storage_type {storage_type!r} (available: {known}); a plug-in "
        f"provides a new one through the entry point group {ENTRY_POINT_GROUP!r}"
    )


def storage_class(storage_type: str, name: str = "?") -> StorageClass:
    """The backend class for `storage_type` (`name` is the storage, for messages). Raises
    ConfigError when there is none, or when a plug-in is not a `Storage` with ``from_config``."""
    found = _find(storage_type, name)
    if not (isinstance(found, type) and issubclass(found, Storage) and hasattr(found, "from_config")):
        raise ConfigError(
            f"storages.{name}: {storage_type!r} resolves to {found!r}, not a Storage class with from_config"
        )
    return cast(StorageClass, found)


def build_storage(config: StorageConfig, tuning: TransferTuning) -> Storage:
    """A storage for one ``[[storages]]`` entry, with its ``create_only`` mode. Raises ConfigError for
    an unavailable type; the backend's own construction errors (ValueError, StorageRefused, ...) pass
    through."""
    storage = storage_class(config.storage_type, config.name).from_config(config, tuning)
    storage.create_only = config.create_only
    return storage
