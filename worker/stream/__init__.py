"""Stream's REST API: the signed client (`client`) and the request budget all processes share
(`limits`)."""
