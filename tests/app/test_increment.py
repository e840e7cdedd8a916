"""POST /increment and /increment/batch on the shipped default model: answers users rely on."""

from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.codec import add_one
from tests.app.client import conforms, post

# Lengths drawn uniformly from 1-200, then the digits (leading zeros included).
numbers_of_1_to_200_digits = st.integers(min_value=1, max_value=200).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n)
)


SPEC: dict[str, Any] = {}


def increment(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = post(client, "/increment", body)
    assert response.status_code == 200, response.text
    if not SPEC:
        SPEC.update(client.get("/openapi.json").json())
    conforms(SPEC, response.json(), "Answer")  # the documented shape, nothing more
    result: dict[str, Any] = response.json()
    return result


def test_carry_through_nines_with_every_step_shown(client: TestClient) -> None:
    result = increment(client, {"number": "1476233999"})
    assert result["input"] == "1476233999"
    assert result["output"] == "1476234000"
    assert result["check"] == {"expected": None, "correct": True}
    assert result["proved"] is True
    assert result["carry_run"] == 3
    assert result["model"]["name"] == "counter"
    steps = result["steps"]
    assert [s["position"] for s in steps] == list(range(11))
    assert [s["input_digit"] for s in steps] == [9, 9, 9, 3, 3, 2, 6, 7, 4, 1, 0]
    assert [s["output_digit"] for s in steps] == [0, 0, 0, 4, 3, 2, 6, 7, 4, 1, 0]
    assert [s["extra"] for s in steps] == [False] * 10 + [True]
    for step in steps:
        assert abs(sum(step["probabilities"]) - 1) < 1e-3
        assert step["probability"] == max(step["probabilities"])
        assert step["probabilities"].index(step["probability"]) == step["output_digit"]


def test_carry_out_uses_the_extra_step(client: TestClient) -> None:
    result = increment(client, {"number": "999"})
    assert result["output"] == "1000"
    assert result["steps"][-1] == {**result["steps"][-1], "extra": True, "output_digit": 1}


def test_certified_model_says_unbounded_proved_and_raises_no_flag(client: TestClient) -> None:
    result = increment(client, {"number": "5" + "9" * 500})
    assert result["reliable_carry_length"] == "unbounded"
    assert result["proved"] is True
    assert result["flags"]["beyond_reliable_carry"] is False
    assert result["flags"]["known_failing_carry"] is False
    assert result["warnings"] == []
    assert result["check"]["correct"] is True


def test_leading_zeros_are_accepted_and_dropped_from_the_output(client: TestClient) -> None:
    result = increment(client, {"number": "007"})
    assert result["input"] == "007"
    assert result["output"] == "8"
    assert result["check"] == {"expected": None, "correct": True}
    assert len(result["steps"]) == 4  # every digit given is processed, plus the extra step


def test_json_integers_are_accepted_even_beyond_the_int_string_limit(client: TestClient) -> None:
    assert increment(client, {"number": 41})["output"] == "42"
    huge = "7" * 5000  # Python's int() refuses more than 4300 digits by default
    body = b'{"number": ' + huge.encode() + b', "detail": "none"}'
    response = post(client, "/increment", body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == huge[:-1] + "8"


def test_json_minus_zero_is_the_integer_zero(client: TestClient) -> None:
    assert post(client, "/increment", b'{"number": -0}').json()["output"] == "1"
    batch = post(client, "/increment/batch", b'{"numbers": [-0, 4], "detail": "none"}').json()
    assert [r["input"] for r in batch["results"]] == ["0", "4"]


def test_detail_levels_shrink_the_response(client: TestClient) -> None:
    number = "1234567899"
    full = increment(client, {"number": number, "detail": "full"})
    digits = increment(client, {"number": number, "detail": "digits"})
    summary = increment(client, {"number": number, "detail": "summary"})
    none = increment(client, {"number": number, "detail": "none"})
    assert [s["output_digit"] for s in digits["steps"]] == [
        s["output_digit"] for s in full["steps"]
    ]
    assert all("probabilities" not in s for s in digits["steps"])
    weakest = sorted(full["steps"], key=lambda s: s["probability"])[:5]
    assert {s["position"] for s in summary["steps"]} == {s["position"] for s in weakest}
    assert none["steps"] == []
    assert full["output"] == digits["output"] == summary["output"] == none["output"]


def test_auto_detail_summarizes_long_inputs_and_cuts_the_echo(client: TestClient) -> None:
    result = increment(client, {"number": "3" * 30_000})  # also past the in-loop limit
    assert result["detail"] == "summary"
    assert len(result["steps"]) == 5
    assert result["output"] == "3" * 29_999 + "4"
    assert result["check"] == {"correct": True, "expected": None}
    assert result["input_digits"] == 30_000
    assert result["input"] == "333333333333...333333333333 (30000 digits)"


def test_batch_answers_in_order_in_one_request(client: TestClient) -> None:
    numbers: list[Any] = ["1299", 41, "0", "9" * 30]
    response = post(client, "/increment/batch", {"numbers": numbers, "detail": "none"})
    assert response.status_code == 200, response.text
    if not SPEC:
        SPEC.update(client.get("/openapi.json").json())
    conforms(SPEC, response.json(), "BatchAnswer")
    results = response.json()["results"]
    assert [r["input"] for r in results] == ["1299", "41", "0", "9" * 30]
    assert [r["output"] for r in results] == ["1300", "42", "1", "1" + "0" * 30]


def test_batch_results_match_single_requests(client: TestClient) -> None:
    numbers = ["8", "123456789", "99"]
    batch = post(client, "/increment/batch", {"numbers": numbers}).json()["results"]
    for number, result in zip(numbers, batch, strict=True):
        single = increment(client, {"number": number})
        # Padding never changes a shorter number's steps (up to float rounding of batched math).
        assert result["output"] == single["output"]
        assert len(result["steps"]) == len(single["steps"]) == len(number) + 1
        for mine, alone in zip(result["steps"], single["steps"], strict=True):
            assert mine["output_digit"] == alone["output_digit"]
            assert abs(mine["probability"] - alone["probability"]) < 1e-5


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(numbers_of_1_to_200_digits)
def test_default_model_answers_n_plus_one(client: TestClient, number: str) -> None:
    result = increment(client, {"number": number, "detail": "none"})
    assert result["output"] == add_one(number)
    assert result["check"]["correct"] is True


carry_heavy = st.builds(
    lambda head, nines: head + "9" * nines,
    st.text("0123456789", min_size=0, max_size=12),
    st.integers(min_value=0, max_value=14),
).filter(bool)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(carry_heavy, min_size=1, max_size=12))
@example(["9" * 18, "1299", "00999999", "7"])  # 18 nines + 1 gives 0 (the card's first failure)
def test_a_batchs_checks_say_exactly_which_answers_are_wrong(
    client: TestClient, numbers: list[str]
) -> None:
    """counter-post gets carries wrong: in a batch of mixed lengths (padding, leading zeros),
    each answer's check agrees with exact arithmetic and with the number asked alone."""
    body = {"numbers": numbers, "model": "counter-post", "detail": "none"}
    results = post(client, "/increment/batch", body).json()["results"]
    for number, result in zip(numbers, results, strict=True):
        right = result["output"] == add_one(number)
        assert result["check"] == {"correct": right, "expected": None if right else add_one(number)}
        alone = increment(client, {"number": number, "model": "counter-post", "detail": "none"})
        assert alone["output"] == result["output"]
        assert alone["check"] == result["check"]
