"""Signed notifications to the app's own endpoints (``[[notify]]``): the outbox the ledger's scripts
write in the same step as the change they announce (`outbox`), the body of each format (`formats`),
the signature (`signing`) and the delivery, at least once, with backoff (`delivery`)."""
