"""The operations dashboard (#16): server-rendered pages over the same queries as the API."""
