"""What each connection is held to (ProtocolLimits), read once from the settings: the
connection cap (COUNTER_MAX_CONNECTIONS, and below the process's file limit), the header cap and
deadlines, how much of a refused body is read and dropped, and how long a drain lasts."""

import resource
from dataclasses import dataclass

from app.settings import Settings

RESERVED_FILES = 64  # descriptors kept for models, logs and the listener itself
LINGER_BODIES = 4  # a refused body is read and dropped up to this many COUNTER_MAX_BODY_BYTES


def connection_cap(wanted: int) -> int:
    """The connection cap: the setting, or the file limit minus a reserve if that is lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FILES))


@dataclass(frozen=True)
class ProtocolLimits:
    """What each connection is held to, from the settings (each named in its refusal)."""

    max_connections: int = 512
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 10.0
    linger_bytes: int = 16 * 1024 * 1024  # the most of a refused body read and dropped
    drain_seconds: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> "ProtocolLimits":
        return cls(
            max_connections=connection_cap(settings.max_connections),
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            write_timeout=settings.write_timeout_seconds,
            linger_bytes=LINGER_BODIES * settings.max_body_bytes,
            drain_seconds=settings.drain_seconds,
        )
