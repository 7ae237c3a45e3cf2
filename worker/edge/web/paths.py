"""The receiver's HTTP paths, spelled once: the app routes them; the CLI, tests and benches build
URLs from them. Operators rely on every one of them (Stream's webhook URL, the compose and
Kubernetes health checks, Prometheus' scrape config): they do not change.
"""

from __future__ import annotations

WEBHOOK = "/webhooks/stream"  # Stream's webhook deliveries (POST)
HEALTHZ = "/healthz"  # liveness: the process answers
READYZ = "/readyz"  # readiness: Redis answers
METRICS = "/metrics"  # Prometheus text format
STATUS = "/"  # the status page (with ARCHIVER_STATUS_TOKEN set)
STATIC = "/static"  # the status page's script and styles, under STATIC/<name>
FILES = "/files"  # local files behind a signed, expiring token: FILES/<token> (GET, HEAD; `archiver link`)
LINKS = "/links"  # the status page's download button: POST LINKS/<transfer id> answers 303 to a fresh link
