"""Finding what Stream holds: backfill and reconciliation runs over its REST API (`run`), their
query and counts (`model`), checkpoints, the ledger view that orders files soonest-to-expire first,
and deleting archived files from Stream (`deletion`)."""
