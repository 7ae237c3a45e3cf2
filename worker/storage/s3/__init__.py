"""S3 and S3-compatible endpoints (AWS, MinIO, R2, Backblaze, ...)."""

from worker.storage.s3.storage import S3Storage

__all__ = ["S3Storage"]
