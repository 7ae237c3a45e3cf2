"""`archiver try`: a sample recording and transcription served locally, signed ready events, and
the report of what became of them."""
