"""build_storage: built-in types, plug-ins through entry points, unknown types refused clearly."""

from __future__ import annotations

from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path

import pytest

from config import ConfigError, StorageConfig, TransferTuning
from tests.support.moto import ACCESS_KEY, SECRET_KEY, s3_config
from worker.storage import registry
from worker.storage.local.storage import LocalStorage
from worker.storage.registry import ENTRY_POINT_GROUP, build_storage
from worker.storage.s3.storage import S3Storage

TUNING = TransferTuning()


class PluginStorage(LocalStorage):
    """A plug-in backend, as a third-party distribution would declare it."""

    storage_type = "ftp"


def plugins(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    found = EntryPoints([EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)])
    monkeypatch.setattr(registry, "entry_points", lambda group: found if group == ENTRY_POINT_GROUP else None)


def test_local(tmp_path: Path) -> None:
    """storage_type "local" builds a LocalStorage on bucket (root) and path (prefix)."""
    config = StorageConfig(name="disk", storage_type="local", bucket=str(tmp_path), path="/a/b/")
    storage = build_storage(config, TUNING)
    assert isinstance(storage, LocalStorage) and storage.name == "disk"
    assert storage.describe() == f"{tmp_path}/a/b/"


def test_s3_without_network() -> None:
    """storage_type "s3" builds an S3Storage from aws_s3 without contacting anything."""
    storage = build_storage(s3_config("http://127.0.0.1:9/?x=1", "bkt", "pre"), TUNING)
    assert isinstance(storage, S3Storage) and storage.capabilities.multipart
    assert storage.describe() == "s3://bkt/pre/ at http://127.0.0.1:9/"
    assert ACCESS_KEY not in storage.describe() and SECRET_KEY not in storage.describe()
    storage.close()


def test_an_unknown_type_names_the_storage_and_the_choices() -> None:
    """A type nobody provides is a ConfigError naming the storage and what is available."""
    config = StorageConfig(name="cloud", storage_type="ftp", bucket="b")
    with pytest.raises(ConfigError, match="storages.cloud: unknown storage_type 'ftp' .*abs, gcs, local, s3"):
        build_storage(config, TUNING)


def test_plugin_from_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution's entry point in archiver.storages provides a storage type."""
    plugins(monkeypatch, "ftp", f"{__name__}:PluginStorage")
    storage = build_storage(StorageConfig(name="g", storage_type="ftp", bucket=str(tmp_path)), TUNING)
    assert type(storage) is PluginStorage


def test_plugin_that_is_not_a_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point that does not lead to a Storage class is a ConfigError, not a crash later."""
    plugins(monkeypatch, "ftp", "pathlib:Path")
    with pytest.raises(ConfigError, match="not a Storage class"):
        build_storage(StorageConfig(name="z", storage_type="ftp", bucket=str(tmp_path)), TUNING)
