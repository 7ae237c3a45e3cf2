"""The archiver: the domain (no Celery) in packages by subject; see docs/architecture.md."""
