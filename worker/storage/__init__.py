"""Storage backends behind one small interface (`base.Storage`), built by `registry.build_storage`."""

from worker.storage.base import Capabilities, ObjectWriter, Protection, Retention, Storage, StoredObject, unprotected

__all__ = ["Capabilities", "ObjectWriter", "Protection", "Retention", "Storage", "StoredObject", "unprotected"]
