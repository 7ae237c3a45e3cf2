"""Legal holds and erasure (issue 17): `holds` places and releases a call's hold, in the ledger and on
every archived object where the store keeps holds; `erase` deletes a call's (or a session's) copies
everywhere, unless a hold or a retention period forbids it. Every step is noted in the audit log
(`worker.auditlog.note`)."""
