"""A quick figure for parallel ranged downloads: one file from the fake CDN behind a proxy that caps
every connection (`tests.support.chaos.SlowProxy`), fetched over one stream and over N ranges at once,
hashed with SHA-256 as the worker does, nothing stored. Not the issue-18 benchmark (no storage, no
Celery, no added first-byte latency): ``python -m bench.ranged_download [--mib 128] [--rate-mib 16]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

from tests.fakestream.server import start_fake_stream
from tests.support.chaos import SlowProxy
from worker.errors import IncompleteDownload
from worker.transfer import ranged
from worker.transfer.download import Download, DownloadClient, http_client, open_download

MiB = 1024 * 1024


def fetch(http: DownloadClient, url: str, streams: int, range_size: int) -> tuple[str, float]:
    """SHA-256 of the file and the seconds it took, over `streams` connections."""
    digest = hashlib.sha256()
    started = time.perf_counter()
    first = open_download(http, url, MiB)

    def open_range(start: int, end: int) -> Download:
        download = open_download(http, url, MiB, offset=start, etag=first.etag, end=end)
        return ranged.checked(download, start, end, first.total)

    def recover(exc: IncompleteDownload, at: int) -> None:
        raise exc

    with first:
        second = ranged.second_range(open_range, first, 0, range_size) if streams > 1 else None
        if second is None:
            for chunk in first.chunks():
                digest.update(chunk)
        else:
            assert first.total is not None
            ranged.RangeFeed(open_range, recover, first.total, range_size, streams).run(first, second, digest.update)
    return digest.hexdigest(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=128, help="file size")
    parser.add_argument("--rate-mib", type=float, default=16, help="cap per connection, MiB/s")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--range-mib", type=int, default=8, help="range size (part_size)")
    args = parser.parse_args()
    data = os.urandom(args.mib * MiB)
    expected = hashlib.sha256(data).hexdigest()
    with start_fake_stream() as fake, SlowProxy(fake.cdn_host, int(args.rate_mib * MiB)) as proxy:
        url = proxy.url_for(fake.signed_url(fake.add_recording("default:bench", data)))
        for streams in args.streams:
            with http_client([proxy.host], 10, 60) as http:
                sha, seconds = fetch(http, url, streams, args.range_mib * MiB)
            assert sha == expected
            print(f"{args.mib} MiB, {streams} stream(s), cap {args.rate_mib} MiB/s per connection: "
                  f"{seconds:.2f} s, {args.mib / seconds:.1f} MiB/s")


if __name__ == "__main__":
    main()
