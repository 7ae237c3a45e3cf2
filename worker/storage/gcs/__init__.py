"""Google Cloud Storage."""

from worker.storage.gcs.storage import GCSStorage

__all__ = ["GCSStorage"]
