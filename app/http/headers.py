"""A request's headers, read once: one pass over the raw ASGI list by the edge, into the
request's state (RequestState), where the routes find them.

- the request id: a client's X-Request-ID is kept when it is short and plain (1-64 characters
  of letters, digits, '-', '_', '.', ':'), else one is made;
- the declared Content-Length (None when absent, chunked or not plain digits), which the edge
  holds to the body limit and admission (app.runtime.service) sizes a request by;
- the Host (lower-cased) and the Content-Type, as sent.
A header that comes twice counts by its first value. Any other header a route needs is found
by `header`, the same way.
"""

import os
import random
import re
from dataclasses import dataclass

from starlette.requests import Request

_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
# Made request ids: 64 random bits from a generator seeded once from the OS. An id names a
# request in logs, it guards nothing, so it needs no system call per request (secrets did one,
# a measurable share of a request's time).
_IDS = random.Random(os.urandom(16))
STATE = "rnn_counter.state"  # the RequestState's key in the ASGI scope
Raw = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestState:
    """One request's side channel between the edge and its route, typed: what its headers
    said, and what the route adds for the access line (the model asked, the digits asked)."""

    request_id: str
    declared_length: int | None
    host: bytes
    content_type: bytes
    model: str | None = None
    digits: int | None = None

    @property
    def media_type(self) -> str:
        """The Content-Type without its parameters, lower-cased ('' when none was sent)."""
        return self.content_type.split(b";", 1)[0].strip().lower().decode("latin-1")


def read(raw: Raw) -> RequestState:
    """The headers the service reads, in one pass."""
    request_id = length = host = content_type = None
    for name, value in raw:
        if name == b"content-length":
            if length is None:
                length = value
        elif name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"host":
            if host is None:
                host = value
        elif name == b"x-request-id" and request_id is None:
            request_id = value
    return RequestState(
        request_id.decode("ascii")
        if request_id is not None and _ID.fullmatch(request_id)
        else f"{_IDS.getrandbits(64):016x}",
        int(length) if length is not None and length.isdigit() and len(length) < 19 else None,
        host.lower() if host is not None else b"",
        content_type or b"",
    )


def state_of(request: Request) -> RequestState:
    """The request's state, as the edge read it."""
    state: RequestState = request.scope[STATE]
    return state


def header(raw: Raw, name: bytes) -> bytes | None:
    """The first value of a header (its name lower-case, as ASGI gives it), or None."""
    for key, value in raw:
        if key == name:
            return value
    return None
