"""Protobuf messages built and read on the wire, by field number: for requests a generated
client could not send (malformed ones) and for calls made without registering protobuf names
in the test process (other tests' clients register the same ones)."""


def varint(value: int) -> bytes:
    """A base-128 varint; a negative value as protobuf writes an int64 (two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): a string, bytes or a sub-message."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _varint_at(message: bytes, at: int) -> tuple[int, int]:
    """The base-128 varint at `at`, and where the next field starts."""
    value, shift = 0, 0
    while True:
        byte = message[at]
        at, value, shift = at + 1, value | (byte & 0x7F) << shift, shift + 7
        if not byte & 0x80:
            return value, at


def fields(message: bytes) -> dict[int, list[bytes]]:
    """A message's length-delimited fields (all a ModelInferResponse's top-level ones are), by
    number."""
    found: dict[int, list[bytes]] = {}
    at = 0
    while at < len(message):
        key, at = _varint_at(message, at)
        length, at = _varint_at(message, at)
        found.setdefault(key >> 3, []).append(message[at : at + length])
        at += length
    return found
