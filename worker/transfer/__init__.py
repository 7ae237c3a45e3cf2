"""One transfer: claim, download (behind the URL guard), stream into the storage, verify, record
(`run`)."""
