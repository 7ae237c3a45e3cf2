"""Azure Blob Storage."""

from worker.storage.azure.storage import AzureStorage

__all__ = ["AzureStorage"]
