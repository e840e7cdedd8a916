"""The one codec: number string <-> digit arrays, least significant digit first.

Used by training (to make tensors) and by serving (to feed the ONNX model), so both sides
agree on the layout. Imports neither torch nor FastAPI.

Layout of an encoded number "1299" (4 digits) -> [9, 9, 2, 1, 0]: reversed digits plus one
extra zero step, so that the answer's extra leading digit (999 -> 1000) has a place.
A batch is padded with zeros at the end (leading zeros of the number) to the longest item.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Digits = npt.NDArray[np.int64]

_ZERO = ord("0")


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty string of ASCII 0-9 only ("١٢٣".isdigit() is True; this is not).

    bytes.isdigit is ASCII-only and much faster than str.isdigit's Unicode lookup, which
    matters for a large batch parsed on the event loop.
    """
    return bool(text) and text.isascii() and text.encode("ascii").isdigit()


def encode(number: str) -> Digits:
    """'1299' -> [9, 9, 2, 1, 0]  (int64, len(number) + 1)."""
    row: Digits = encode_batch([number])[0]
    return row


def encode_batch(numbers: Sequence[str], width: int | None = None) -> Digits:
    """Numbers -> int64 [batch, width], least significant first, zero padded.

    width defaults to the longest number + 1 (the extra zero step).
    """
    if not numbers:
        raise ValueError("encode_batch needs at least one number")
    longest = max(len(n) for n in numbers)
    width = longest + 1 if width is None else width
    if width < longest:
        raise ValueError(f"width {width} is shorter than the longest number ({longest} digits)")
    out = np.zeros((len(numbers), width), dtype=np.int64)
    for number in numbers:
        if not is_ascii_digits(number):
            raise ValueError(f"not a string of ASCII digits: {number[:20]!r}")
    if all(len(n) == longest for n in numbers):  # one conversion for the whole block
        block = np.frombuffer("".join(numbers).encode("ascii"), dtype=np.uint8)
        out[:, :longest] = block.reshape(len(numbers), longest)[:, ::-1] - _ZERO
        return out
    for row, number in enumerate(numbers):
        raw = np.frombuffer(number.encode("ascii"), dtype=np.uint8)
        out[row, : len(number)] = raw[::-1] - _ZERO
    return out


def decode(digits: Sequence[int] | Digits) -> str:
    """Least significant first -> canonical decimal: [0, 0, 0, 1] -> '1000', [0, 0] -> '0'."""
    arr = np.asarray(digits, dtype=np.uint8)
    if arr.ndim != 1 or arr.size == 0 or int(arr.max(initial=0)) > 9:
        raise ValueError("decode needs a non-empty 1-D array of digits 0-9")
    text = (arr[::-1] + _ZERO).tobytes().decode("ascii").lstrip("0")
    return text or "0"


def carry_run(number: str) -> int:
    """Trailing nines: how far the carry of n + 1 must travel."""
    return len(number) - len(number.rstrip("9"))


def add_one(number: str) -> str:
    """Exact n + 1 as a canonical decimal, by schoolbook carrying on the string.

    Linear in length; Python's int() is quadratic and capped at 4300 digits by default.
    """
    stripped = number.rstrip("9")
    nines = len(number) - len(stripped)
    if not stripped:
        return "1" + "0" * nines
    head = (stripped[:-1] + chr(ord(stripped[-1]) + 1)).lstrip("0")
    return head + "0" * nines


def add_one_digits(digits: Digits) -> Digits:
    """[batch, width] least significant first -> the digits of each row + 1, same layout: the
    carry reaches position i when every digit below it is 9 (the top one must have room)."""
    carried = np.ones(digits.shape, dtype=bool)
    np.logical_and.accumulate(digits[:, :-1] == 9, axis=1, out=carried[:, 1:])
    result: Digits = digits + carried
    result[result == 10] = 0  # a carried 9
    return result


def target_digits(number: str) -> Digits:
    """The digits of number + 1 in the layout of encode(number): the training label."""
    row: Digits = encode_batch([add_one(number)], width=len(number) + 1)[0]
    return row
