"""A batch of plain digit strings is checked at once, any other batch item by item: both ways
must accept the same bodies, give the same numbers and refuse with the same message."""

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.api import bodies
from app.errors import ServiceError

MAX_DIGITS = 12
items = st.lists(
    st.one_of(
        st.text("0123456789", max_size=MAX_DIGITS + 2),  # empty and too long ones too
        st.text(max_size=4),
        st.sampled_from(["\u0661\u0662", "12 3", "-1", "+4", "\uff11"]),  # Arabic, fullwidth
        st.integers(0, 10**14),
    ),
    min_size=1,
    max_size=8,
)


def outcome(body: bytes) -> tuple[list[str] | None, str | None]:
    try:
        return bodies.parse_batch(body, MAX_DIGITS, 100, 10**6).numbers, None
    except ServiceError as error:
        return None, error.message


@settings(max_examples=300, deadline=None)
@given(items)
@example(["1299", "41"])
@example(["1299", ""])
@example(["1" * (MAX_DIGITS + 1)])
def test_the_bulk_check_reads_a_batch_as_the_item_check_does(asked: list[Any]) -> None:
    body = orjson.dumps({"numbers": asked})
    bulk = outcome(body)
    checked_at_once = bodies._all_digit_strings
    try:
        bodies._all_digit_strings = lambda *_: False
        one_by_one = outcome(body)
    finally:
        bodies._all_digit_strings = checked_at_once
    assert bulk == one_by_one
