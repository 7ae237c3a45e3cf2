"""The ledger: every transfer's state in Redis (`store.Ledger`), its key names (`keys`), atomic
scripts, leases, schema, pruning and export. ``from worker.ledger import connect`` is what the
compose health check runs: it stays."""

from worker.ledger.connection import connect

__all__ = ["connect"]
