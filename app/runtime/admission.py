"""Admission of large requests: a request whose body passes LARGE_BODY bytes holds one of
COUNTER_MAX_LARGE_REQUESTS slots while it is answered (its body read first, among at most
READERS_PER_SLOT readers per slot), so the largest requests at once stay within the memory the
manifests give a worker. The counters live on the CounterService; this is their discipline."""

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from app.errors import Kind, ServiceError

if TYPE_CHECKING:
    from app.runtime.service import CounterService

LARGE_BODY = 64 * 1024  # a request body past this counts against COUNTER_MAX_LARGE_REQUESTS

# The large request being read or answered in this task, if any (see LargeAdmission).
_ADMISSION: ContextVar["LargeAdmission | None"] = ContextVar("admission", default=None)
READERS_PER_SLOT = 8  # large bodies read at once per COUNTER_MAX_LARGE_REQUESTS slot


class LargeAdmission:
    """A large request's hold on COUNTER_MAX_LARGE_REQUESTS: from entry, or, for a body read
    by app.http.exchange.read_body, from the moment the body has arrived (reading() then
    arrived()), until its answer is made."""

    def __init__(self, service: "CounterService", declared_length: int | None) -> None:
        self.service = service
        self.declared_length = declared_length
        self.held = False
        self.read = False
        self.http = (
            False  # its body was read by app.http.exchange.read_body: app.http.edge releases it
        )
        self._token: Token[LargeAdmission | None] | None = None

    async def __aenter__(self) -> None:
        service = self.service
        limit = service.settings.max_large_requests
        if service.large_requests >= limit:
            raise service.busy(
                f"{service.large_requests} large requests (bodies over {LARGE_BODY} bytes) "
                "are being answered"
            )
        queued, steps = service.pending_steps, service.settings.max_pending_steps
        length = self.declared_length
        if length is not None and queued and queued + length > steps:
            # Its digits are about its bytes: a body this large would be read and parsed (which
            # holds the event loop) only to be refused below.
            raise ServiceError(
                Kind.OVERLOADED,
                f"the service is busy: {queued} digit steps are queued or running, and a body "
                f"of {length} bytes would pass the limit of {steps} "
                "(COUNTER_MAX_PENDING_STEPS); retry shortly",
                {"retry-after": "1"},
            )
        service.large_requests += 1
        self.held = True
        self._token = _ADMISSION.set(self)

    def reading(self) -> None:
        """The body is about to be read: no slot while it arrives, a place among the readers."""
        service = self.service
        if service.large_reading >= READERS_PER_SLOT * service.settings.max_large_requests:
            raise service.busy(f"{service.large_reading} large bodies are being received")
        self._release()
        service.large_reading += 1
        self.read = self.http = True

    def arrived(self) -> None:
        """The body is in: take the slot (503 if the others took them meanwhile)."""
        service = self.service
        if self.read:
            service.large_reading -= 1
            self.read = False
        if service.large_requests >= service.settings.max_large_requests:
            raise service.busy(f"{service.large_requests} large requests are being answered")
        service.large_requests += 1
        self.held = True

    def _release(self) -> None:
        if self.held:
            self.service.large_requests -= 1
            self.held = False

    async def __aexit__(self, failed: type[BaseException] | None, *_: object) -> None:
        if self.read:
            self.service.large_reading -= 1
            self.read = False
        if failed is None and self.http and self.held:
            return  # answered: held until app.http.edge has written it (finish_admission)
        self.finish()

    def finish(self) -> None:
        self._release()
        if self._token is not None:
            _ADMISSION.reset(self._token)
            self._token = None


def large_admission() -> LargeAdmission | None:
    """The large request this task holds, if any."""
    return _ADMISSION.get()


def finish_admission() -> None:
    """The request's answer has been written (or it failed): its large-request slot, if it
    held one, is free. Called by app.http.edge once per request, after the response is sent."""
    admission = _ADMISSION.get()
    if admission is not None:
        admission.finish()
