"""Celery: the app and its thin tasks. Everything real happens in `worker`."""
