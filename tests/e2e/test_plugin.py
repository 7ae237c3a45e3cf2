"""A third-party backend, installed as a distribution with an `archiver.storages` entry point."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Archiver
from tests.fakestream.server import FakeStream

pytestmark = pytest.mark.e2e

PLUGIN = '''
"""A plug-in backend: files under a directory named in its own options table."""
from pathlib import Path

from worker.storage.local.storage import LocalStorage


class ShelfStorage(LocalStorage):
    storage_type = "shelf"

    @classmethod
    def from_config(cls, config, tuning):
        return cls(config.name, Path(config.options["shelf_root"]) / config.bucket, config.path)
'''


def install_plugin(site: Path) -> None:
    """What `pip install archiver-shelf` would leave behind: a module and its dist-info."""
    (site / "archiver_shelf.py").write_text(PLUGIN)
    info = site / "archiver_shelf-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: archiver-shelf\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[archiver.storages]\nshelf = archiver_shelf:ShelfStorage\n")


def test_a_plugin_storage_is_usable_by_its_storage_type(
    archiver: Callable[..., Archiver], fake: FakeStream, tmp_path: Path
) -> None:
    site, shelf = tmp_path / "site", tmp_path / "shelves"
    site.mkdir()
    install_plugin(site)
    storage = {"name": "shelf", "storage_type": "shelf", "bucket": "b1", "options": {"shelf_root": str(shelf)}}
    service = archiver([storage])
    service.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), service.env.get("PYTHONPATH")]))
    assert service.cli("storage", "check", "shelf").returncode == 0
    url = service.start_web()
    service.start_worker()
    recording = fake.add_recording("default:plugged", os.urandom(2048))
    assert fake.deliver(url, recording).status_code == 202
    (entry,) = service.wait_for_states(1)
    assert (shelf / "b1" / entry["key"]).read_bytes() == recording.read_bytes()
