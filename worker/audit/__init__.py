"""Proof that nothing was missed: an audit compares, file by file, what Stream lists, what the ledger
says and what each destination storage holds (`run`), judges each file at each destination
(`judge`: the verdicts of `model`), reads the storages at a steady pace (`pacing`), resumes from a
checkpoint in Redis (`checkpoint`), keeps the last completed audit's summary for monitoring
(`last`), and writes its report (`formats`)."""
