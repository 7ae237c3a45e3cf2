"""LinkMaker: which transfers get a link and why not, and which files a token reaches (only a local
storage's, inside its directory), against a real Redis and a real directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from config import ArchiveConfig
from tests.support.ledger_states import add
from worker.clock import now_ms
from worker.errors import LinkUnavailable
from worker.ledger.store import Ledger
from worker.links import LinkMaker
from worker.links.served import FileToken, read_token, sign_token, signing_key
from worker.storage.local import LocalStorage

FILES = "/files"
PUBLIC = "https://archiver.example.com/a"


def archive(root: Path, **top: Any) -> ArchiveConfig:
    storages = [{"name": "disk", "storage_type": "local", "bucket": str(root), "path": "rec/"},
                {"name": "s3", "storage_type": "s3", "bucket": "b", "aws_s3": {"s3_region": "us-east-1"}}]
    return ArchiveConfig.model_validate({"storages": storages, "default_storage": "disk", **top})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def maker(root: Path, ledger: Ledger) -> Iterator[LinkMaker]:
    made = LinkMaker(archive(root, public_url=PUBLIC), ledger, FILES)
    yield made
    made.close()


def archived(ledger: Ledger, root: Path, name: str, data: bytes = b"recording bytes") -> str:
    """An archived transfer to storage "disk" whose object is on disk; its id."""
    (tid,) = add(ledger, name, "archived")
    transfer = ledger.get(tid)
    assert transfer is not None
    with LocalStorage("disk", root, "rec/").open_writer(transfer.key, content_type="video/mp4", metadata={}) as w:
        w.write(data)
        w.commit()
    return tid


def test_a_local_link_is_a_token_under_public_url(maker: LinkMaker, ledger: Ledger, root: Path) -> None:
    """An archived transfer on local disk: a URL under public_url + /files/ whose token grants exactly its
    storage and key, until now + ttl on Redis's clock."""
    transfer = ledger.get(archived(ledger, root, "c1"))
    assert transfer is not None
    link = maker.link(transfer, timedelta(minutes=15))
    assert link.url.startswith(f"{PUBLIC}{FILES}/") and (link.storage, link.key) == ("disk", transfer.key)
    secret, now = signing_key(ledger)
    grant = read_token(secret, link.url.rsplit("/", 1)[1], now)
    assert grant is not None and (grant.storage, grant.key) == ("disk", transfer.key)
    assert abs(grant.expires_ms - (now + 15 * 60_000)) < 5000
    assert abs(link.expires_at.timestamp() * 1000 - grant.expires_ms) < 1


@pytest.mark.parametrize("state", ["queued", "transferring", "failed", "lost", "skipped"])
def test_only_an_archived_transfer_gets_a_link(maker: LinkMaker, ledger: Ledger, state: str) -> None:
    """Queued, transferring, failed, lost, skipped: no link, and the state is said."""
    (tid,) = add(ledger, f"s-{state}", state)  # type: ignore[arg-type] # a State, from the parameters
    transfer = ledger.get(tid)
    assert transfer is not None
    with pytest.raises(LinkUnavailable, match=f"{tid} is {state}, not archived"):
        maker.link(transfer, timedelta(minutes=1))


def test_without_public_url_a_local_file_gets_no_link(root: Path, ledger: Ledger) -> None:
    """The message names the setting to set."""
    transfer = ledger.get(archived(ledger, root, "c2"))
    assert transfer is not None
    maker = LinkMaker(archive(root), ledger, FILES)
    with pytest.raises(LinkUnavailable, match="public_url.*not set"):
        maker.link(transfer, timedelta(minutes=1))
    assert ledger.redis.get(ledger.keys.link_key) is None  # no key made for nothing


def test_an_object_gone_from_its_storage_gets_no_link(maker: LinkMaker, ledger: Ledger, root: Path) -> None:
    """Archived, then deleted behind the archiver's back: no link to a 404, the reason said."""
    transfer = ledger.get(archived(ledger, root, "c3"))
    assert transfer is not None
    (root / "rec" / transfer.key).unlink()
    with pytest.raises(LinkUnavailable, match="holds no object"):
        maker.link(transfer, timedelta(minutes=1))


def test_a_storage_no_longer_configured_gets_no_link(maker: LinkMaker, ledger: Ledger) -> None:
    """A transfer archived to a storage since removed from the configuration: no link, the storage named."""
    (tid,) = add(ledger, "c4", "archived", storages=("gone",))
    transfer = ledger.get(tid)
    assert transfer is not None
    with pytest.raises(LinkUnavailable, match="no storage named 'gone'"):
        maker.link(transfer, timedelta(minutes=1))


def token(ledger: Ledger, storage: str, key: str, ttl_ms: int = 60_000) -> str:
    secret, now = signing_key(ledger)
    return sign_token(secret, FileToken(storage, key, now + ttl_ms))


def test_a_valid_token_serves_its_file(maker: LinkMaker, ledger: Ledger, root: Path) -> None:
    """Its real path inside the storage's directory, its size and its name (for Content-Disposition)."""
    transfer = ledger.get(archived(ledger, root, "c5", b"x" * 1234))
    assert transfer is not None
    served = maker.served_file(token(ledger, "disk", transfer.key))
    assert served is not None and served.size == 1234 and served.filename == transfer.filename
    assert served.path == os.path.realpath(root / "rec" / transfer.key)


def test_forged_and_expired_tokens_serve_nothing(maker: LinkMaker, ledger: Ledger, root: Path) -> None:
    """A flipped character, another key, an expiry just past: None, the same for each (403)."""
    transfer = ledger.get(archived(ledger, root, "c6"))
    assert transfer is not None
    good = token(ledger, "disk", transfer.key)
    assert maker.served_file(good[:-1] + ("A" if good[-1] != "A" else "B")) is None
    assert maker.served_file(sign_token(bytes(32), FileToken("disk", transfer.key, now_ms() + 60_000))) is None
    assert maker.served_file(token(ledger, "disk", transfer.key, ttl_ms=-1)) is None


@pytest.mark.parametrize("key", ["../outside.txt", "../../etc/passwd", "/etc/passwd", "a/../../outside.txt", "",
                                 "link/outside.txt", "dir"])
def test_a_validly_signed_token_reaches_nothing_outside_the_storage(
        maker: LinkMaker, ledger: Ledger, root: Path, key: str) -> None:
    """Even signed with the right key (a bug elsewhere), a key that climbs out, is absolute, goes through a
    symbolic link leading outside, or names a directory reaches nothing: FileNotFoundError (404)."""
    (root / "rec" / "dir").mkdir(parents=True)
    (root / "outside.txt").write_text("secret")
    (root / "rec" / "link").symlink_to(root)
    with pytest.raises(FileNotFoundError):
        maker.served_file(token(ledger, "disk", key))


@pytest.mark.parametrize("storage", ["s3", "nope"])
def test_a_token_for_a_storage_that_is_not_local_here_serves_nothing(
        maker: LinkMaker, ledger: Ledger, storage: str) -> None:
    """A token naming an S3 storage, or one not configured: /files/ serves only local storages (404)."""
    with pytest.raises(FileNotFoundError):
        maker.served_file(token(ledger, storage, "default/x/a.mp4"))


class ShelfStorage(LocalStorage):
    """A plug-in backend built on LocalStorage (as tests/e2e/test_plugin.py's), declaring no links."""

    storage_type = "shelf"


def test_a_plugin_without_links_gets_none_even_built_on_local_disk(root: Path, ledger: Ledger) -> None:
    """Only built-in local disk is served by /files/: a plug-in (even a LocalStorage underneath) gets the
    base class's answer, LinkUnavailable saying it gives no links; a token naming it serves nothing."""
    config = ArchiveConfig.model_validate({"storages": [
        {"name": "shelf", "storage_type": "shelf", "bucket": str(root)}], "public_url": PUBLIC})
    maker = LinkMaker(config, ledger, FILES)
    maker._storages["shelf"] = shelf = ShelfStorage("shelf", root)  # what the registry would build from its entry point
    assert not shelf.capabilities.links
    with shelf.open_writer("a.mp4", content_type="video/mp4", metadata={}) as writer:
        writer.write(b"x")
        writer.commit()
    with pytest.raises(LinkUnavailable, match="gives no download links"):
        maker.object_link("shelf", "a.mp4", timedelta(minutes=1))
    with pytest.raises(FileNotFoundError):
        maker.served_file(token(ledger, "shelf", "a.mp4"))
