"""The archiver's domain: webhooks, ledger, transfers, storage. Never imports Celery."""
