"""Local disk (or any mounted file system). ``worker.storage.local.LocalStorage`` is the import path
the README's plug-in example uses: it stays."""

from worker.storage.local.storage import LocalStorage

__all__ = ["LocalStorage"]
