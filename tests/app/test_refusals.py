"""Every bad input kind gets its 4xx with a message saying what was wrong and what is accepted."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.json_body import JsonFloat, JsonInt, load_json
from app.errors import ServiceError
from app.settings import Settings
from tests.app.client import JSON, metric, post, started

ACCEPTED = "accepted: a string of ASCII digits 0-9"


@pytest.mark.parametrize(
    ("number", "said"),
    [
        ("", "is empty"),
        (" 12", "contains spaces"),
        ("1 2", "contains spaces"),
        ("12\n", "contains spaces"),
        ("-5", "has a sign"),
        ("+5", "has a sign"),
        ("1.5", "decimal point"),
        ("1,000", "decimal point or separator"),
        ("1e3", "exponent notation"),
        ("1_000", "underscores"),
        ("١٢٣", "non-ASCII digit '١'"),
        ("１２３", "non-ASCII digit '１'"),
        ("²", "non-ASCII digit '²'"),
        ("12a", "contains 'a', which is not a digit"),
        ("0x1F", "contains 'x'"),
    ],
)
def test_bad_strings(client: TestClient, number: str, said: str) -> None:
    response = post(client, "/increment", {"number": number})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_number"
    assert said in response.json()["message"]
    assert ACCEPTED in response.json()["message"]


@pytest.mark.parametrize(
    ("raw", "read"), [("1299.0", "1299"), ("1.299e3", "1299"), ("13E2", "1300"), ("-0.0", "0")]
)
def test_whole_json_numbers_in_any_notation_are_integers(
    client: TestClient, raw: str, read: str
) -> None:
    """JSON Schema's "integer" is any whole value, so the documented schema allows 1299.0;
    the service reads it exactly, as 1299."""
    response = post(client, "/increment", f'{{"number": {raw}, "detail": "none"}}'.encode())
    assert response.status_code == 200, response.text
    assert response.json()["input"] == read


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("null", "is null"),
        ("true", "is a boolean (true)"),
        ("false", "is a boolean (false)"),
        ("[1, 2]", "is an array"),
        ('{"n": 1}', "is an object"),
        ("-5", "is a negative integer"),
        ("1.5", "is a JSON number that is not a whole number >= 0"),
        ("-1.0", "is a JSON number that is not a whole number >= 0"),
        ("1e1000001", "is a JSON number that is not a whole number >= 0 of at most 64"),
        ("1e999999", "send longer numbers as strings"),
    ],
)
def test_bad_json_values(client: TestClient, raw: str, said: str) -> None:
    response = post(client, "/increment", f'{{"number": {raw}}}'.encode())
    assert response.status_code == 422
    assert said in response.json()["message"]
    assert ACCEPTED in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (b"{", 400, "not valid JSON"),
        (b"", 400, "the body is empty"),
        (b'{"number": NaN}', 400, "NaN is not a JSON value"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        ('{"number": "1"}'.encode("utf-16"), 400, "it is not UTF-8 text"),
        ('{"number": "1"}'.encode("utf-16-le"), 400, "not valid JSON"),  # NULs are UTF-8
        ('{"number": "1"}'.encode("utf-32"), 400, "it is not UTF-8 text"),
        (b"[" * 100_000, 400, "not valid JSON"),
        (b'["1299"]', 422, "must be a JSON object"),
        (b'"1299"', 422, "must be a JSON object"),
        (b"{}", 422, "missing field 'number'"),
        (b'{"number": "1", "colour": "red"}', 422, "unknown field 'colour'"),
        (b'{"number": "1", "detail": "most"}', 422, "detail must be one of"),
        (b'{"number": "1", "model": 7}', 422, "model must be a model name"),
    ],
)
def test_bad_bodies(client: TestClient, body: bytes, status: int, said: str) -> None:
    response = post(client, "/increment", body)
    assert response.status_code == status
    assert response.json()["error"] == ("malformed_json" if status == 400 else "invalid_request")
    assert said in response.json()["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/increment", content=b'{"number": "1"}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["message"]


def test_unknown_model_is_404_listing_the_models(client: TestClient) -> None:
    response = post(client, "/increment", {"number": "1", "model": "countr"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_model"
    assert "countr" in response.json()["message"]
    assert "counter, counter-post" in response.json()["message"]


def test_limits_are_settings_and_named_in_the_error(shipped: object) -> None:
    limits = Settings(max_digits=10, max_batch_items=3, max_batch_digits=30, max_detail_digits=20)
    with started(limits) as client:
        too_long = post(client, "/increment", {"number": "1" * 11})
        assert too_long.status_code == 422
        assert (
            "11 characters, more than the limit of 10 digits (COUNTER_MAX_DIGITS)" in too_long.text
        )
        too_long_int = post(client, "/increment", b'{"number": ' + b"1" * 11 + b"}")
        assert too_long_int.status_code == 422
        assert "11 digits, more than the limit of 10" in too_long_int.text
        assert post(client, "/increment", {"number": "1" * 10}).status_code == 200

        too_many = post(client, "/increment/batch", {"numbers": ["1"] * 4})
        assert too_many.status_code == 422
        assert "4 items, more than the limit of 3 (COUNTER_MAX_BATCH_ITEMS)" in too_many.text
        too_wide = post(client, "/increment/batch", {"numbers": ["1", "1", "1" * 10]})
        assert too_wide.status_code == 422
        assert "COUNTER_MAX_BATCH_DIGITS" in too_wide.text

        listed = post(client, "/increment/batch", {"numbers": ["1" * 7] * 3, "detail": "full"})
        assert listed.status_code == 422
        assert "COUNTER_MAX_DETAIL_DIGITS" in listed.text
        assert "ask 'summary' or 'none'" in listed.text


def test_huge_json_integer_is_a_clear_422_not_a_500(client: TestClient) -> None:
    body = b'{"number": ' + b"9" * 1_000_001 + b"}"  # past max_digits and far past int()'s limit
    response = post(client, "/increment", body)
    assert response.status_code == 422
    assert "1000001 digits, more than the limit of 1000000" in response.json()["message"]


def test_one_bad_batch_item_refuses_the_request_naming_each(client: TestClient) -> None:
    response = post(client, "/increment/batch", {"numbers": ["12", "-1", "7", "x", None]})
    assert response.status_code == 422
    message = response.json()["message"]
    assert "numbers[1] has a sign" in message
    assert "numbers[3] contains 'x'" in message
    assert "numbers[4] is null" in message


@pytest.mark.parametrize("numbers", ["[]", '"12"', "null", "{}"])
def test_batch_needs_a_non_empty_array(client: TestClient, numbers: str) -> None:
    response = post(client, "/increment/batch", f'{{"numbers": {numbers}}}'.encode())
    assert response.status_code == 422
    assert "numbers must be a non-empty array" in response.json()["message"]


def test_unknown_path_and_method_keep_the_error_shape(client: TestClient) -> None:
    assert client.get("/nowhere").json()["error"] == "not_found"
    response = client.get("/increment")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_refusals_are_counted_by_kind(client: TestClient) -> None:
    kinds = ("invalid_number", "malformed_json", "unknown_model")
    before = {kind: metric(client, f'counter_errors_total{{kind="{kind}"}}') for kind in kinds}
    post(client, "/increment", {"number": "-1"})
    post(client, "/increment/batch", {"numbers": ["1", "x"]})
    post(client, "/increment", b"{")
    after = {kind: metric(client, f'counter_errors_total{{kind="{kind}"}}') for kind in kinds}
    assert {kind: after[kind] - before[kind] for kind in kinds} == {
        "invalid_number": 2,
        "malformed_json": 1,
        "unknown_model": 0,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"number": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"numbers": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"number": st.text(max_size=12)},
        optional={"model": json_values, "detail": json_values, "x": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, path=st.sampled_from(["/increment", "/increment/batch"]))
def test_no_body_ever_gets_a_5xx(client: TestClient, body: bytes, path: str) -> None:
    response = client.post(path, content=body, headers=JSON)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert set(response.json()) == {"error", "message", "request_id"}


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _standard(body: bytes) -> Any:
    """The body as the standard parser alone reads it: numbers kept as text, no NaN."""
    text = body.decode("utf-8-sig")
    return json.loads(text, parse_int=JsonInt, parse_float=JsonFloat, parse_constant=_refuse)


def _typed(value: Any) -> Any:
    """The value with each leaf's exact type next to it (JsonInt("5") is not "5")."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(body=bodies)
def test_the_fast_parser_reads_a_body_as_the_standard_one_does(body: bytes) -> None:
    try:
        expected = _standard(body)
    except (ValueError, RecursionError):  # ValueError: bad UTF-8, bad JSON and NaN alike
        with pytest.raises(ServiceError):
            load_json(body)
        return
    assert _typed(load_json(body)) == _typed(expected)
