"""What the server tells the runtime of its traffic: the two side channels between them, named
once and passed to both, rather than a protocol's class attribute and a flag set from outside.

- in_flight: requests read and not yet answered, over every connection of this process. Counted
  by the HTTP protocol (app.http.protocol); read by the service (with 1, a small request runs at
  once instead of waiting a loop turn for company in a batch) and by the edge (a lone access
  line is written at once). Under a server that counts nothing (a test client, Ray Serve) it
  stays 0, and small requests are batched.
- draining: SIGTERM has come and the drain has begun (set by app.http.server): every response
  says Connection: close, /readyz answers 503, a count ends, gRPC stops taking calls.
"""


class Traffic:
    """The server's traffic as the runtime sees it (see the module's docstring)."""

    __slots__ = ("draining", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
