"""The old home of `Digests` and `Hasher`, kept for plug-in writers that import it. They live in
`worker.storage.checksums`."""

from worker.storage.checksums import BackgroundHasher, Digests, Hasher

__all__ = ["BackgroundHasher", "Digests", "Hasher"]
