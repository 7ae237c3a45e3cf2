"""A call's sessions: the manifest written beside a session's files (`manifest`)."""
