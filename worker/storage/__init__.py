"""Storage backends behind one small interface (`base.Storage`), built by `registry.build_storage`."""

from worker.storage.base import Capabilities, ObjectWriter, Storage, StoredObject

__all__ = ["Capabilities", "ObjectWriter", "Storage", "StoredObject"]
