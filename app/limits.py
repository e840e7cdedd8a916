"""The request body limit, enforced before and while the body is read (pure ASGI).

A declared Content-Length over the limit is refused at once with 413, unread; a body without
one (chunked) is counted as it streams, and refused the moment it passes the limit, so no
request can make the service hold more than the limit in memory.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import InputError, error_response


def too_large(limit: int) -> InputError:
    """413 for a body over the limit (COUNTER_MAX_BODY_BYTES)."""
    return InputError(
        413,
        "body_too_large",
        f"the request body is larger than {limit} bytes (COUNTER_MAX_BODY_BYTES)",
    )


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes with 413, without reading them whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    await self._refuse(scope, receive, send)
                    return
                break

        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except InputError as exc:
            # Normally the app's error handler answers; this covers a body read outside a route.
            if started or exc.kind != "body_too_large":
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = too_large(self.limit)
        response = error_response(error.status, error.kind, error.message, {"connection": "close"})
        await response(scope, receive, send)
