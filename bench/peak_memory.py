"""Peak memory and speed of one worker process archiving one large file.

    .venv/bin/python -m bench.peak_memory [--mib 300]

Real parts: redis-server, the fake Stream's CDN serving the file from disk, moto_server (S3) and
a local directory. Each transfer runs in a fresh process that reports its own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from config import load_settings
from tests.fakestream.server import start_fake_stream
from tests.support.moto import ACCESS_KEY, REGION, SECRET_KEY, create_bucket, s3_client, start_moto_server
from tests.support.redis import RedisServer
from tests.support.settings import write_config
from worker.intake import record_routes
from worker.ledger import Ledger, connect
from worker.webhooks import ready_file

API_KEY, API_SECRET = "bench-key", "bench-secret-0123456789-0123456789-0123456789"


def make_file(path: Path, mib: int) -> Path:
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(block)
    return path


def measure(env: dict[str, str], transfer_id: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "bench.run_one_transfer", transfer_id],
                            env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=300, help="size of the recording in MiB")
    args = parser.parse_args()
    table = Table("destination", "size MiB", "outcome", "seconds", "MB/s", "worker CPU s", "peak RSS MiB")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        redis_server = RedisServer(root / "redis").start()
        moto_url, stop_moto = start_moto_server()
        try:
            with start_fake_stream(API_KEY, API_SECRET) as fake:
                source = make_file(root / "recording.mp4", args.mib)
                bucket = create_bucket(s3_client(moto_url))
                storages = [
                    {"name": "disk", "storage_type": "local", "bucket": str(root / "archive")},
                    {"name": "s3", "storage_type": "s3", "bucket": bucket,
                     "aws_s3": {"s3_region": REGION, "s3_api_key": ACCESS_KEY, "s3_secret": SECRET_KEY,
                                "s3_custom_endpoint_url": moto_url}},
                ]
                for storage in storages:
                    config = write_config(root / f"{storage['name']}.toml", {
                        "default_storage": storage["name"], "download_hosts": [fake.cdn_host],
                        "storages": [storage]})
                    env = {"STREAM_API_KEY": API_KEY, "STREAM_API_SECRET": API_SECRET,
                           "REDIS_URL": redis_server.url, "ARCHIVER_CONFIG": str(config)}
                    settings = load_settings(env)
                    ledger = Ledger(connect(redis_server.url))
                    file = fake.add_recording(f"bench:{storage['name']}", source)
                    stream_file = ready_file(fake.event_for(file))
                    assert stream_file is not None
                    (tid,) = record_routes(settings.archive, ledger, stream_file).transfer_ids
                    figures = measure(env, tid)
                    mb = args.mib * (1 << 20) / 1e6
                    table.add_row(storage["name"], str(args.mib), figures["outcome"],
                                  f"{figures['seconds']:.1f}", f"{mb / figures['seconds']:.0f}",
                                  f"{figures['cpu_seconds']:.1f}", f"{figures['peak_rss_mib']:.0f}")
        finally:
            stop_moto()
            redis_server.stop()
    Console().print(table)


if __name__ == "__main__":
    main()
