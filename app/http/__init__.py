"""The HTTP layer: uvicorn and its guards (server), the one middleware every request passes
(edge), the lean routes' class, and what every route needs of a request and its reply."""
