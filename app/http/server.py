"""uvicorn, with what it lacks against hostile clients and for a clean stop.

uvicorn stays the server (and httptools its parser); app.http.protocol adds the connection cap,
the header and body deadlines and caps, and one write per response, in as small a layer as
works. This module runs it, and adds draining on SIGTERM: /readyz turns 503 at once, new
connections are refused, and every response on the open ones says Connection: close; once they
are gone, or after COUNTER_DRAIN_SECONDS, a request whose body is still arriving is refused
(503, Retry-After) and uvicorn's own graceful shutdown closes what is idle and lets in-flight
requests finish.
"""

import asyncio
import logging
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn

from app import process
from app.http.limits import ProtocolLimits
from app.http.protocol import GuardedConfig, GuardedProtocol
from app.metrics import REQUESTS_IN_PROGRESS
from app.runtime.traffic import Traffic
from app.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM starts a drain before the usual graceful shutdown."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float, traffic: Traffic) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.traffic = traffic
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Before the start is complete (models loading) there is nothing to drain.
        if sig != signal.SIGTERM or self._draining or not self.started or not self.drain_seconds:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        log.info("SIGTERM: draining for up to %g s before shutting down", self.drain_seconds)
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._begin_drain, sig, frame)

    def _begin_drain(self, sig: int, frame: FrameType | None) -> None:
        """Refuse new connections first (the orchestrator sends them elsewhere), then tell
        the open ones: a client told Connection: close reconnects and finds nobody listening,
        rather than a listener about to vanish with its connection in the backlog."""
        for listener in self.servers:
            listener.close()
        self.traffic.draining = True  # /readyz: 503 from now on, every response: close
        loop = asyncio.get_event_loop()
        self._drain(sig, frame, loop.time() + self.drain_seconds)

    def _drain(self, sig: int, frame: FrameType | None, deadline: float) -> None:
        """Open connections are served, each response saying Connection: close, until none is
        left or the deadline passes. Then uvicorn's own graceful shutdown."""
        loop = asyncio.get_event_loop()
        if self.server_state.connections and loop.time() < deadline:
            loop.call_later(0.05, self._drain, sig, frame, deadline)
            return
        for connection in list(self.server_state.connections):
            if isinstance(connection, GuardedProtocol):
                connection.stop_body()
        super().handle_exit(sig, frame)


def run(
    app: Any, settings: Settings, sock: socket.socket | None = None, traffic: Traffic | None = None
) -> None:
    """Serve the app with uvicorn and the protections above, until SIGTERM or Ctrl-C; on a
    listening socket already opened (app.workers), or on settings.host and port. The traffic
    is the app's (app.main.create_app makes it), counted and drained here."""
    traffic = traffic or Traffic()
    REQUESTS_IN_PROGRESS.set_function(lambda: traffic.in_flight)
    config = GuardedConfig(
        app,
        ProtocolLimits.of(settings),
        traffic,
        host=settings.host,
        port=settings.port,
        # asyncio's own loop, whether or not uvloop is installed (a dev install pulls it in):
        # measured side by side it gave no more requests per second here, and more memory;
        # the service serves no WebSockets.
        loop="asyncio",
        ws="none",
        log_level=settings.log_level,
        # No formatters of uvicorn's own: its lines reach the root logger, which `python -m app`
        # sets to write JSON, one object a line, as the access log does.
        log_config=None,
        access_log=False,  # app.http.access_log writes one JSON line per request instead
        server_header=False,
        # Nothing here reads the client's address or scheme (no URL is built from them, the
        # access log has none): uvicorn's X-Forwarded-* middleware would cost every request.
        proxy_headers=False,
        timeout_keep_alive=int(max(1, settings.idle_timeout_seconds)),
        timeout_graceful_shutdown=int(max(1, settings.max_run_seconds + 1)),
        backlog=256,
    )
    process.serve()  # the collector's threshold and the GIL switch interval, for serving
    DrainingServer(config, settings.drain_seconds, traffic).run(sockets=[sock] if sock else None)
