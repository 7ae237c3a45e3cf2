"""`archiver find`'s search (worker/ledger/search.py): filters that intersect, newest first, archived
transfers only, limits, and deep pages; against a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.clock import to_ms
from worker.files import Kind, StreamFile, transfer_id
from worker.ledger.models import NewTransfer
from worker.ledger.search import FIRST_PAGE, FindQuery, find, iter_matches
from worker.ledger.store import Ledger

T0 = datetime(2026, 5, 10, 9, 0, tzinfo=UTC)


def add(ledger: Ledger, call_cid: str, name: str, start: datetime, *, kind: Kind = "recording",
        custom: list[str] | None = None, storages: tuple[str, ...] = ("disk",), archived: bool = True) -> list[str]:
    """A file of `call_cid` started at `start`, one transfer per storage, archived unless told."""
    file = StreamFile(call_cid=call_cid, kind=kind, filename=f"{name}.mp4", url="https://cdn/x?sig=1",
                      start_time=start, end_time=start + timedelta(minutes=30))
    tids = [transfer_id(file.file_id, s) for s in storages]
    ledger.record(file, [NewTransfer(t, s, f"{call_cid}/{name}") for t, s in zip(tids, storages, strict=True)],
                  expires_at=file.end_time + timedelta(days=14), custom=custom)
    for tid in tids if archived else ():
        assert ledger.finish(tid, ledger.claim(tid, "w", 60_000).token, "archived", bytes=100, sha256="ab" * 32)
    return tids


def names(ledger: Ledger, query: FindQuery, limit: int | None = None) -> list[str]:
    return [f"{m.transfer.filename}@{m.transfer.storage}" for m in find(ledger, query, limit).matches]


def seed(ledger: Ledger) -> None:
    add(ledger, "default:acme-1", "a1", T0, custom=["tenant=acme", "vip=true"], storages=("disk", "s3"))
    add(ledger, "default:acme-1", "a1-t", T0 + timedelta(minutes=1), kind="transcription", custom=["tenant=acme"])
    add(ledger, "default:acme-2", "a2", T0 + timedelta(days=1), custom=["tenant=acme"])
    add(ledger, "livestream:acme-2", "l2", T0 + timedelta(days=2), custom=["tenant=acme"])
    add(ledger, "default:globex", "g1", T0 + timedelta(days=1, hours=1), custom=["tenant=globex"])
    add(ledger, "default:plain", "p1", T0 - timedelta(days=30))
    add(ledger, "default:acme-1", "queued", T0 + timedelta(days=3), custom=["tenant=acme"], archived=False)


def test_everything_archived_comes_newest_first_one_row_per_storage(ledger: Ledger) -> None:
    seed(ledger)
    assert names(ledger, FindQuery()) == ["l2.mp4@disk", "g1.mp4@disk", "a2.mp4@disk", "a1-t.mp4@disk",
                                          "a1.mp4@disk", "a1.mp4@s3", "p1.mp4@disk"]
    (first,) = find(ledger, FindQuery(), limit=1).matches
    assert first.started_at == T0 + timedelta(days=2) and first.transfer.state == "archived"


def test_each_filter_alone(ledger: Ledger) -> None:
    seed(ledger)
    assert names(ledger, FindQuery(call="default:acme-1")) == ["a1-t.mp4@disk", "a1.mp4@disk", "a1.mp4@s3"]
    assert names(ledger, FindQuery(call="acme-2")) == ["l2.mp4@disk", "a2.mp4@disk"]  # an id alone: every type
    assert names(ledger, FindQuery(call_type="livestream")) == ["l2.mp4@disk"]
    assert names(ledger, FindQuery(custom=("tenant=globex",))) == ["g1.mp4@disk"]
    assert names(ledger, FindQuery(kind="transcription")) == ["a1-t.mp4@disk"]
    day = to_ms(T0.replace(hour=0))
    assert names(ledger, FindQuery(since_ms=day + 86_400_000, until_ms=day + 2 * 86_400_000)) == \
        ["g1.mp4@disk", "a2.mp4@disk"]
    assert names(ledger, FindQuery(until_ms=to_ms(T0))) == ["p1.mp4@disk"]  # until is not included
    assert names(ledger, FindQuery(since_ms=to_ms(T0 + timedelta(days=2)))) == ["l2.mp4@disk"]


def test_filters_intersect(ledger: Ledger) -> None:
    seed(ledger)
    assert names(ledger, FindQuery(custom=("tenant=acme",), call_type="default")) == \
        ["a2.mp4@disk", "a1-t.mp4@disk", "a1.mp4@disk", "a1.mp4@s3"]
    assert names(ledger, FindQuery(custom=("tenant=acme", "vip=true"))) == ["a1.mp4@disk", "a1.mp4@s3"]
    assert names(ledger, FindQuery(call="default:acme-1", kind="recording")) == ["a1.mp4@disk", "a1.mp4@s3"]
    assert names(ledger, FindQuery(call="acme-2", call_type="default")) == ["a2.mp4@disk"]
    assert names(ledger, FindQuery(custom=("tenant=acme",), since_ms=to_ms(T0 + timedelta(hours=12)))) == \
        ["l2.mp4@disk", "a2.mp4@disk"]
    assert names(ledger, FindQuery(call="default:globex", custom=("tenant=acme",))) == []
    assert names(ledger, FindQuery(custom=("tenant=nobody",), call_type="default")) == []
    assert names(ledger, FindQuery(call="nobody")) == []
    assert names(ledger, FindQuery(since_ms=to_ms(T0), until_ms=to_ms(T0))) == []


def test_a_limit_says_when_more_match(ledger: Ledger) -> None:
    seed(ledger)
    found = find(ledger, FindQuery(custom=("tenant=acme",)), limit=2)
    assert [m.transfer.filename for m in found.matches] == ["l2.mp4", "a2.mp4"] and found.more
    assert not find(ledger, FindQuery(custom=("tenant=acme",)), limit=5).more
    assert len(find(ledger, FindQuery(), limit=None).matches) == 7


def test_pages_deep_in_a_large_index_keep_every_file_once_newest_first(ledger: Ledger) -> None:
    """Far more files than a page, many starting at the same millisecond: every one, once, in order."""
    count = FIRST_PAGE * 6
    for n in range(count):
        add(ledger, f"default:c{n % 7}", f"f{n:04d}", T0 + timedelta(seconds=n // 300), custom=["tenant=acme"])
    for query in (FindQuery(), FindQuery(custom=("tenant=acme",)), FindQuery(call_type="default")):
        found = list(iter_matches(ledger, query))
        assert len(found) == count and len({m.transfer.id for m in found}) == count
        assert [m.started_at for m in found] == sorted((m.started_at for m in found), reverse=True)
    assert len(names(ledger, FindQuery(call="default:c3"))) == len(range(3, count, 7))


def test_any_name_comes_back_exactly(ledger: Ledger) -> None:
    """What the page script encodes (JSON, in Lua) is read back byte for byte: quotes, backslashes,
    control characters, any script."""
    name = 'ünï "q" \\ \t ✓ 😀 <&>'
    add(ledger, "default:ünï", name, T0, custom=[f"note={name}"])
    (match,) = find(ledger, FindQuery(custom=(f"note={name}",))).matches
    assert (match.transfer.filename, match.transfer.call_cid, match.transfer.key) == (
        f"{name}.mp4", "default:ünï", f"default:ünï/{name}")
