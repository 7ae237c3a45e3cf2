"""The ledger: every transfer's state in Redis (`store.Ledger`), its atomic scripts, leases, schema,
pruning and export. ``from worker.ledger import connect`` is what the compose health check runs: it
stays."""

from worker.ledger.connection import connect
from worker.ledger.store import Ledger

__all__ = ["Ledger", "connect"]
