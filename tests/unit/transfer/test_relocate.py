"""A transfer that must replace its damaged object where retention forbids it (worker/transfer/relocate.py):
the copy goes to a new key the ledger records (``key``; the old one in ``replaced_key``), never over
other bytes. Real Redis, the fake Stream, Azurite behind the fault proxy playing a container whose
immutability policy refuses the overwrite (Azure's 409 BlobImmutableDueToPolicy: Azurite keeps no
policy), and the ledger's script on its own."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator

import pytest

from tests.fakestream.server import FakeStream
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, blob_names, container_client, create_container
from tests.support.faultproxy import FaultProxy, answer
from tests.unit.ledger.test_ledger import a_file
from tests.unit.ledger.test_ledger import record as record_in
from tests.unit.transfer.test_transfer import record
from worker.ledger.store import Ledger
from worker.runtime import Runtime
from worker.transfer.relocate import alternative_keys
from worker.transfer.run import run_transfer

POLICY = "This operation is not permitted as the blob is immutable due to a policy."


@pytest.mark.parametrize(("key", "first", "second"), [
    ("default/c1/rec.mp4", "default/c1/rec.1.mp4", "default/c1/rec.2.mp4"),
    ("default/c1/notes", "default/c1/notes.1", "default/c1/notes.2"),
    ("default/c1/.hidden", "default/c1/.hidden.1", "default/c1/.hidden.2"),
    ("a.b/rec", "a.b/rec.1", "a.b/rec.2"),
    ("rec.tar.gz", "rec.tar.1.gz", "rec.tar.2.gz"),
])
def test_alternative_keys_put_the_number_before_the_extension(key: str, first: str, second: str) -> None:
    """``rec.mp4`` → ``rec.1.mp4``, ``rec.2.mp4``…; a name without an extension ends in the number."""
    assert list(alternative_keys(key, 2)) == [first, second]


@pytest.fixture
def container(azurite: str) -> str:
    return create_container(azurite)


@pytest.fixture
def proxy(azurite: str) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.rsplit("/", 1)[0]) as proxy:
        yield proxy


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], proxy: FaultProxy, container: str) -> Runtime:
    table = {"name": "abs", "storage_type": "abs", "bucket": container, "path": "p/",
             "azure_blob": {"abs_account_name": ACCOUNT, "abs_endpoint_url": f"{proxy.url}/{ACCOUNT}",
                            "abs_account_key": ACCOUNT_KEY}}  # fmt: skip
    return make_runtime(table, retry_backoff="10s", retry_backoff_max="1m")


def data_blobs(azurite: str, container: str) -> list[str]:
    """The blobs but the session's manifest."""
    return sorted(name for name in blob_names(azurite, container) if "/manifest_" not in name)


def blob(azurite: str, container: str, name: str) -> bytes:
    with container_client(azurite, container) as client:
        return client.get_blob_client(name).download_blob().readall()


def put(azurite: str, container: str, name: str, data: bytes) -> None:
    with container_client(azurite, container) as client:
        client.get_blob_client(name).upload_blob(data, overwrite=True)


def damaged_and_requeued(runtime: Runtime, fake: FakeStream, azurite: str, container: str,
                         proxy: FaultProxy) -> tuple[str, str, bytes, bytes]:
    """Archive a file, damage its blob, queue it again as a verification would, and have the store refuse
    any overwrite of that blob from now on; its transfer id, old key, the file's and the damaged bytes."""
    file = fake.add_recording("default:kept", os.urandom(30_000))
    tid = record(runtime, fake, file)
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None
    damaged = os.urandom(30_000)
    put(azurite, container, f"p/{transfer.key}", damaged)
    assert runtime.ledger.requeue_archived(tid, "sha256 changed")
    proxy.add(answer(409, "BlobImmutableDueToPolicy", POLICY, method="PUT",
                     path=re.escape(f"/{container}/p/{transfer.key}") + "($|\\?)"))
    return tid, transfer.key, file.read_bytes(), damaged


def test_a_damaged_object_a_policy_keeps_goes_to_a_new_key_the_ledger_records(
    runtime: Runtime, fake: FakeStream, azurite: str, container: str, proxy: FaultProxy
) -> None:
    """The replacing write is refused (ObjectLocked): the copy goes to ``rec.1.mp4``-style key, create-only;
    the ledger's transfer is archived there with the old key in replaced_key, the new key is this file's
    in the key owners, and the damaged blob is left as the store keeps it."""
    tid, old_key, data, damaged = damaged_and_requeued(runtime, fake, azurite, container, proxy)
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and transfer.key == next(alternative_keys(old_key))
    assert (transfer.replaced_key, transfer.replaces, transfer.sha256, transfer.reason) == (old_key, False,
                                                                                           fake_sha(data), None)
    assert transfer.to_json()["replaced_key"] == old_key
    assert blob(azurite, container, f"p/{transfer.key}") == data
    assert blob(azurite, container, f"p/{old_key}") == damaged
    owners = runtime.ledger.redis.hgetall("archiver:keyowner:abs")
    assert owners[transfer.key] == owners[old_key] == transfer.file_id


def test_an_alternative_holding_an_object_is_never_written_over(
    runtime: Runtime, fake: FakeStream, azurite: str, container: str, proxy: FaultProxy
) -> None:
    """``rec.1.mp4`` already holds someone's bytes: the copy goes to ``rec.2.mp4`` and the other object
    stays as it was."""
    tid, old_key, data, _ = damaged_and_requeued(runtime, fake, azurite, container, proxy)
    first, second = list(alternative_keys(old_key, 2))
    put(azurite, container, f"p/{first}", b"someone else's")
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.key, transfer.replaced_key) == (second, old_key)
    assert blob(azurite, container, f"p/{first}") == b"someone else's"
    assert blob(azurite, container, f"p/{second}") == data
    assert data_blobs(azurite, container) == sorted(f"p/{k}" for k in (old_key, first, second))


def test_a_retry_after_the_move_finds_its_own_bytes_at_the_new_key(
    runtime: Runtime, fake: FakeStream, azurite: str, container: str, proxy: FaultProxy
) -> None:
    """An attempt that moved and committed, then lost its answer to the ledger: the next attempt writes
    create-only at the new key, finds the file's bytes there and is archived (no third key)."""
    tid, old_key, data, _ = damaged_and_requeued(runtime, fake, azurite, container, proxy)
    new_key = next(alternative_keys(old_key))
    claim = runtime.ledger.claim(tid, "w1", 60_000)
    assert runtime.ledger.move_key(tid, claim.token, new_key) is True
    put(azurite, container, f"p/{new_key}", data)  # its commit, whose answer was lost
    runtime.ledger.redis.hset(f"archiver:transfer:{tid}", mapping={"lease_until": 0})  # that worker died
    runtime.ledger.redis.zadd("archiver:due", {tid: 0})
    assert run_transfer(runtime, tid) == "archived"
    transfer = runtime.ledger.get(tid)
    assert transfer is not None and (transfer.key, transfer.replaced_key) == (new_key, old_key)
    assert data_blobs(azurite, container) == sorted([f"p/{old_key}", f"p/{new_key}"])


def fake_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Ledger.move_key ---------------------------------------------------------------------------------------

def test_move_key_needs_the_claim_and_a_key_no_other_file_owns(ledger: Ledger) -> None:
    """Fenced by the lease's token; a key another file owns is refused; a move keeps the old key."""
    tid = record_in(ledger, a_file(), storage="s3")
    ledger.redis.hset("archiver:keyowner:s3", "default/x/rec.1.mp4", "f_other")
    claim = ledger.claim(tid, "w1", 60_000)
    assert ledger.move_key(tid, "not-the-token", "default/x/rec.2.mp4") is None
    assert ledger.move_key(tid, claim.token, "default/x/rec.1.mp4") is False
    assert ledger.move_key(tid, claim.token, "default/x/rec.2.mp4") is True
    moved = ledger.get(tid)
    assert moved is not None and (moved.key, moved.replaced_key) == ("default/x/rec.2.mp4",
                                                                     "default/x/rec_default_x_1.mp4")
    assert ledger.redis.hget("archiver:keyowner:s3", "default/x/rec.2.mp4") == moved.file_id
