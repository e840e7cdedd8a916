"""The HTTP layer: uvicorn (server) and its guards (protocol, limits, one_write), the one
middleware every request passes (edge), the lean routes' class, and what every route needs of a
request and its reply."""
