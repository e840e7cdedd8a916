"""Every refusal the service makes, once: a kind (status and name) and a message in words.

Both protocols raise ServiceError; each writes it in its own shape: the counter's JSON as
{"error": <kind>, "message": <what was wrong and what is accepted>, "request_id": ...}, the
Open Inference Protocol as {"error": <message>}. Every refusal is counted by kind in /metrics.
"""

from enum import Enum


class Kind(Enum):
    """(HTTP status, name) of each kind of refusal."""

    MALFORMED_JSON = (400, "malformed_json")
    MALFORMED_TENSOR = (400, "malformed_tensor")
    UNKNOWN_HOST = (400, "unknown_host")
    MALFORMED_REQUEST = (400, "malformed_request")
    MODEL_REFUSED = (400, "model_refused")
    UNAUTHORIZED = (401, "unauthorized")
    FORBIDDEN = (403, "forbidden")
    UNKNOWN_MODEL = (404, "unknown_model")
    NOT_FOUND = (404, "not_found")
    METHOD_NOT_ALLOWED = (405, "method_not_allowed")
    REQUEST_TIMEOUT = (408, "request_timeout")
    BODY_TOO_LARGE = (413, "body_too_large")
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported_media_type")
    INVALID_NUMBER = (422, "invalid_number")
    INVALID_REQUEST = (422, "invalid_request")
    TOO_MANY_ITEMS = (422, "too_many_items")
    BATCH_TOO_LARGE = (422, "batch_too_large")
    TOO_MUCH_DETAIL = (422, "too_much_detail")
    TOO_MANY_STREAMS = (429, "too_many_streams")
    HEADERS_TOO_LARGE = (431, "headers_too_large")
    CLIENT_DISCONNECTED = (499, "client_disconnected")
    INTERNAL = (500, "internal")
    NOT_READY = (503, "not_ready")
    OVERLOADED = (503, "overloaded")
    TIMED_OUT = (503, "timed_out")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]


class ServiceError(Exception):
    """A request the service refuses: its kind, plain words, and any headers to send."""

    def __init__(self, kind: Kind, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return self.kind.status


def preview(value: str, keep: int = 40) -> str:
    """A client's value echoed in an error: cut to a short, printable preview."""
    text = value if len(value) <= keep else value[:keep] + f"... ({len(value)} characters)"
    return repr(text)


def unknown_model(name: str | None, available: list[str]) -> ServiceError:
    """404 for a model name that is not served, listing those that are."""
    shown = "null" if name is None else preview(name)
    return ServiceError(
        Kind.UNKNOWN_MODEL, f"no model named {shown}; available: {', '.join(available)}"
    )


def not_ready() -> ServiceError:
    return ServiceError(
        Kind.NOT_READY,
        "the models are not loaded yet, or the service is stopping; retry when /readyz is 200",
        {"retry-after": "1"},
    )
