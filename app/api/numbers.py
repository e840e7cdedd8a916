"""One number from a JSON body -> its digit string: a string of ASCII digits, or a JSON
integer >= 0 (and -0), also written with a fraction or an exponent that leaves a whole number
(1299.0, 1.299e3). Everything else is refused with a message that says what was wrong and what
is accepted.
"""

from decimal import Decimal

from app.api.json_body import JsonFloat, JsonInt
from app.errors import Kind, ServiceError, preview
from core.codec import is_ascii_digits


def _what_is_wrong(text: str) -> str:
    """Plain words for why a string is not a number of ASCII digits."""
    if not text:
        return "is empty"
    if any(c.isspace() for c in text):
        return "contains spaces"
    if text[0] in "+-":
        return "has a sign (only numbers >= 0, without a sign, are accepted)"
    if "." in text or "," in text:
        return "has a decimal point or separator"
    if "_" in text:
        return "contains underscores"
    if any(c in "eE" for c in text) and any(c.isdigit() for c in text):
        return "is in exponent notation"
    odd = next(c for c in text if not ("0" <= c <= "9"))
    if odd.isdigit() or odd.isnumeric():
        return f"contains the non-ASCII digit {odd!r} (U+{ord(odd):04X})"
    return f"contains {odd!r}, which is not a digit 0-9"


def integral(text: str, max_digits: int) -> str | None:
    """A JSON number written with a fraction or exponent, if its value is a whole number >= 0
    of at most max_digits digits: its digits, read exactly (1299.0 -> 1299, 13e2 -> 1300).

    JSON Schema's "integer" is any number with no fractional part, whatever its notation, so
    the documented schema and this rule agree. None for anything else.
    """
    try:
        number = Decimal(text)
    except ArithmeticError:
        return None
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # NaN or infinity (the parser refuses them anyway)
        return None
    written = "".join(map(str, digits))
    if exponent < 0:
        written, fraction = written[:exponent], written[exponent:]
        if fraction.strip("0"):
            return None  # a real fraction
    elif len(written.lstrip("0")) + exponent > max_digits:
        return None  # checked before 1e1000000000 is written out
    else:
        written += "0" * exponent
    whole = written.lstrip("0") or "0"
    if (number.is_signed() and whole != "0") or len(whole) > max_digits:
        return None
    return whole


# The most digits a number written with a fraction or an exponent (1.299e3) may stand for.
# Admission (app.runtime.service) sizes a request by its body: 35 bytes of {"number": 1e999999}
# would otherwise ask a 10^6-digit run as a small request, and a batch of them 2 * 10^6.
EXPONENT_DIGITS = 64


def parse_number(value: object, max_digits: int, where: str = "number") -> str:
    """One number from JSON: ASCII digit string or JSON integer >= 0 -> its digit string."""
    if isinstance(value, JsonFloat):
        most = min(max_digits, EXPONENT_DIGITS)
        whole = integral(str(value), most) if len(value) <= 40 else None
        if whole is not None:
            return whole
        problem = f"is a JSON number that is not a whole number >= 0 of at most {most} "
        problem += f"digits written out ({preview(value, 20)}); send longer numbers as strings"
    elif isinstance(value, JsonInt):
        if value == "-0":
            return "0"  # JSON's -0 is the integer zero
        if value.startswith("-"):
            problem = f"is a negative integer ({preview(value, 20)})"
        elif len(value) > max_digits:
            problem = (
                f"has {len(value)} digits, more than the limit of {max_digits} (COUNTER_MAX_DIGITS)"
            )
        else:
            return str(value)
    elif isinstance(value, str):
        if len(value) > max_digits:
            problem = (
                f"has {len(value)} characters, more than the limit of {max_digits} digits "
                "(COUNTER_MAX_DIGITS)"
            )
        elif is_ascii_digits(value):
            return value
        else:
            problem = f"{_what_is_wrong(value)}: {preview(value, 20)}"
    elif value is None:
        problem = "is null"
    elif isinstance(value, bool):
        problem = f"is a boolean ({str(value).lower()})"
    elif isinstance(value, list):
        problem = "is an array"
    elif isinstance(value, dict):
        problem = "is an object"
    else:  # unreachable with json.loads, kept so no type slips through
        problem = f"is a {type(value).__name__}"
    accepted = (
        f'a string of ASCII digits 0-9 like "1299", or a JSON integer >= 0 (1299, 1299.0 or '
        f"1.299e3), at most {max_digits} digits"
    )
    raise ServiceError(Kind.INVALID_NUMBER, f"{where} {problem}; accepted: {accepted}")
