"""What only LocalStorage does: OS error mapping, symlink safety, xattrs, temp files, the root."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker.errors import KeyTaken, StorageRefused, StorageUnavailable
from worker.storage.checksums import Digests
from worker.storage.local.storage import PARTIAL_SUFFIX, XATTR, LocalStorage, storage_error
from worker.storage.local.writer import WRITE_BEHIND

BACKEND = "local"


def write(storage: LocalStorage, key: str, data: bytes = b"data") -> None:
    with storage.open_writer(key, content_type="video/mp4", metadata={"a": "1"}) as writer:
        writer.write(data)
        writer.commit()


@pytest.fixture
def denied_dir(storage: LocalStorage) -> Iterator[Path]:
    """A directory inside the storage where creating files is refused by the kernel. As root,
    chmod does not deny, so the directory is made immutable (chattr +i) instead."""
    directory = storage.base / "denied"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o500)
        yield directory
        directory.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False).returncode:
        pytest.skip("running as root without CAP_LINUX_IMMUTABLE: no way to deny a write here")
    yield directory
    subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_permission_denied_is_refused(storage: LocalStorage, denied_dir: Path) -> None:
    """A directory the process may not write in gives StorageRefused naming the path and the reason."""
    with pytest.raises(StorageRefused, match=r"p/denied/x\.mp4: .*(EACCES|EPERM)"):
        write(storage, "denied/x.mp4")


def test_parent_is_a_file_is_refused(storage: LocalStorage) -> None:
    """A key below an existing object ("a" then "a/b") cannot be written: StorageRefused."""
    write(storage, "a")
    with pytest.raises(StorageRefused, match="p/a/b"):
        write(storage, "a/b")
    with pytest.raises(FileNotFoundError):
        storage.stat("a/b")


def test_symlink_out_of_root_is_refused(storage: LocalStorage, tmp_path: Path) -> None:
    """A symbolic link leading outside the root is never followed, for writing or reading."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("no")
    (storage.base / "escape").symlink_to(outside)
    with pytest.raises(StorageRefused, match="symbolic link"):
        write(storage, "escape/x.mp4")
    with pytest.raises(StorageRefused):
        storage.stat("escape/secret.txt")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_symlink_inside_root_is_followed(storage: LocalStorage) -> None:
    """A link that stays inside the root is an ordinary path."""
    (storage.base / "real").mkdir()
    (storage.base / "alias").symlink_to(storage.base / "real")
    write(storage, "alias/x.mp4", b"via link")
    assert (storage.base / "real" / "x.mp4").read_bytes() == b"via link"


def test_metadata_lives_in_one_xattr(storage: LocalStorage) -> None:
    """Content type and metadata are one JSON extended attribute on the file."""
    write(storage, "m.mp4")
    stored = json.loads(os.getxattr(storage.base / "m.mp4", XATTR))
    assert stored == {"content_type": "video/mp4", "metadata": {"a": "1"}}


def test_no_xattr_support_drops_metadata_with_a_warning(storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the filesystem refuses xattrs the bytes are still archived; the labels are dropped, loudly."""

    def refuse(*_: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    with capture_logs() as logs:
        write(storage, "plain.mp4", b"bytes")
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["storage_metadata_dropped"]
    stored = storage.stat("plain.mp4")
    assert (stored.size, stored.content_type, dict(stored.metadata)) == (5, None, {})


def test_oversized_metadata_is_dropped_with_a_warning(storage: LocalStorage) -> None:
    """Metadata too large for one extended attribute is dropped, loudly, instead of failing as "disk full"."""
    with capture_logs() as logs:
        with storage.open_writer("big-meta.mp4", content_type="video/mp4", metadata={"n": "x" * 5000}) as writer:
            writer.write(b"bytes")
            writer.commit()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["storage_metadata_dropped"]
    assert storage.stat("big-meta.mp4").metadata == {}


def test_temporary_file_is_hidden_beside_the_target(storage: LocalStorage) -> None:
    """While writing, the only file is a hidden .partial one in the object's own directory."""
    with storage.open_writer("dir/x.mp4", content_type="video/mp4", metadata={}) as writer:
        writer.write(b"half")
        names = os.listdir(storage.base / "dir")
        assert len(names) == 1 and names[0].startswith(".x.mp4.") and names[0].endswith(PARTIAL_SUFFIX)
        writer.commit()
    assert os.listdir(storage.base / "dir") == ["x.mp4"]


def test_relative_root_is_resolved_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative root means "relative to the working directory when built", and is created."""
    monkeypatch.chdir(tmp_path)
    storage = LocalStorage("rel", "archive/here")
    monkeypatch.chdir("/")
    write(storage, "k.mp4")
    assert (tmp_path / "archive" / "here" / "k.mp4").is_file()
    assert storage.describe() == f"{tmp_path}/archive/here/"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, StorageUnavailable),
        (errno.EIO, StorageUnavailable),
        (errno.EACCES, StorageRefused),
        (errno.EPERM, StorageRefused),
        (errno.EROFS, StorageRefused),
    ],
)
def test_os_error_mapping(code: int, expected: type[Exception]) -> None:
    """Full disk and I/O errors are transient; permission and read-only errors are permanent."""
    error = storage_error(OSError(code, os.strerror(code)), "disk", "write", "p/k.mp4")
    assert isinstance(error, expected)
    assert "p/k.mp4" in str(error) and os.strerror(code) in str(error) and errno.errorcode[code] in str(error)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    """A worker killed mid-write leaves its hidden temporary file; the next writer of the key removes
    it (and only temporary files of that key)."""
    storage = LocalStorage("disk", tmp_path)
    first = storage.open_writer("call/a.mp4", content_type="video/mp4", metadata={})
    first.write(b"half")  # and the worker dies: nobody aborts it
    other = storage.open_writer("call/b.mp4", content_type="video/mp4", metadata={})
    leftovers = sorted(p.name for p in (tmp_path / "call").iterdir())
    assert len(leftovers) == 2
    with storage.open_writer("call/a.mp4", content_type="video/mp4", metadata={}) as second:
        second.write(b"whole")
        second.commit()
    names = sorted(p.name for p in (tmp_path / "call").iterdir())
    assert "a.mp4" in names and len([n for n in names if n.startswith(".a.mp4.")]) == 0
    assert len([n for n in names if n.startswith(".b.mp4.")]) == 1
    assert (tmp_path / "call" / "a.mp4").read_bytes() == b"whole"
    other.abort()
    first.abort()  # only closes its descriptor here: its file is already gone


def test_long_names_sharing_a_prefix_do_not_remove_each_others_temporary_files(tmp_path: Path) -> None:
    """Two uploads in one directory whose names share their first 100 bytes run at once: each writer
    removes only its own key's dead temporary files, so both commit."""
    storage = LocalStorage("disk", tmp_path)
    stem = "rec_default_" + "x" * 100
    keys = [f"call/{stem}_a.mp4", f"call/{stem}_b.mp4"]
    opened, results = threading.Barrier(2), {}

    def upload(key: str) -> None:
        with storage.open_writer(key, content_type="video/mp4", metadata={}) as writer:
            writer.write(b"first half ")
            opened.wait(timeout=10)  # both temporary files exist; the second opener cleaned its key's
            opened.wait(timeout=10)
            writer.write(key.encode())
            results[key] = writer.commit().size

    threads = [threading.Thread(target=upload, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(results) == keys
    assert sorted(p.name for p in (tmp_path / "call").iterdir()) == sorted(k.split("/")[1] for k in keys)
    for key in keys:
        assert (tmp_path / key).read_bytes() == b"first half " + key.encode()


def test_verify_hashes_the_file_again_since_its_xattr_survives_a_rewrite(storage: LocalStorage) -> None:
    """Bytes rewritten in place keep the old SHA-256 in the extended attribute: verify hashes the file
    itself and reports the change."""
    with storage.open_writer("v.mp4", content_type="video/mp4", metadata={}) as writer:
        writer.write(b"the archived bytes")
        committed = writer.commit(Digests(size=18, sha256=hashlib.sha256(b"the archived bytes").hexdigest()))
    sha256 = committed.checksums["sha256"]
    assert storage.verify("v.mp4", 18, sha256) is None
    with open(storage.path("v.mp4"), "r+b") as file:  # same size, other bytes; the xattr stays
        file.write(b"THE")
    assert storage.stat("v.mp4").checksums["sha256"] == sha256
    assert "sha256" in (storage.verify("v.mp4", 18, sha256) or "")


def test_a_key_holding_a_directory_is_refused_not_taken(storage: LocalStorage) -> None:
    """A key whose name is a directory ("a" while "a/b" exists) is refused as before (StorageRefused,
    reason other), not KeyTaken: there is no object there to compare with."""
    write(storage, "a/b.mp4")
    with pytest.raises(StorageRefused) as caught:
        write(storage, "a")
    assert not isinstance(caught.value, KeyTaken) and caught.value.reason == "other"
    assert [p.name for p in storage.base.rglob("*")] == ["a", "b.mp4"]


def test_a_filesystem_without_hard_links_is_refused_with_the_advice_and_head_mode_writes(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some FUSE and network mounts refuse link(2) (EPERM): the create-only commit is refused, naming
    create_only = "head", and leaves no temporary file; in mode "head" the file is renamed into place
    after a stat, and a second write is still refused."""

    def no_links(*_: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(StorageRefused, match='set create_only = "head"'):
        write(storage, "k.mp4")
    assert list(storage.base.iterdir()) == []
    storage.create_only = "head"
    write(storage, "k.mp4", b"first")
    with pytest.raises(KeyTaken):
        write(storage, "k.mp4", b"second")
    assert storage.path("k.mp4").read_bytes() == b"first"
    assert [p.name for p in storage.base.iterdir()] == ["k.mp4"]


def test_a_file_past_several_write_behind_windows_is_stored_whole(storage: LocalStorage) -> None:
    """The writer hints the kernel every `WRITE_BEHIND` bytes (start writeback, drop cached pages):
    chunks of odd sizes across several windows still give the exact bytes, and commit succeeds."""
    block = os.urandom(1 << 20)
    data = (block * (3 * WRITE_BEHIND // len(block) + 1))[: 3 * WRITE_BEHIND + 12_345]
    with storage.open_writer("big.bin", content_type="video/mp4", metadata={}) as writer:
        for start in range(0, len(data), 777_777):
            writer.write(data[start : start + 777_777])
        stored = writer.commit()
    assert stored.size == len(data)
    assert hashlib.sha256(b"".join(storage.read("big.bin"))).digest() == hashlib.sha256(data).digest()
