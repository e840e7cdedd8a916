"""The explorer's carry: the margin row along a run of nines holds on counter and fades on
counter-post, equal to the heatmap's own probabilities and to core.dynamics' carry chain, and
each card shows carry_attractor with its figure."""

import math

import pytest
from playwright.sync_api import Page

from core.card import ModelCard
from core.dynamics import carry_chain
from core.weights import recurrent_weights_from_onnx
from tests.app.explorer.page import MARKS, MODELS, Visit, ask, cells, positions, row

pytestmark = MARKS


def margins(page: Page) -> dict[int, float]:
    """The margin row: position -> the right digit's margin shown along the carry run."""
    found: list[list[float]] = page.locator("#grid tr.digits.margin td[data-margin]").evaluate_all(
        "cells => cells.map(c => [+c.dataset.position, +c.dataset.margin])"
    )
    return {int(p): m for p, m in found}


def margins_from_cells(page: Page) -> dict[int, float]:
    """The same margins worked out here from the heatmap's probabilities and the exact digits."""
    exact = dict(zip(positions(page), row(page, "exact"), strict=True))
    heat = cells(page)
    out = {}
    for position in margins(page):
        column = {c["digit"]: c["p"] for c in heat if c["position"] == position}
        right = int(exact[position])
        rival = max(p for d, p in column.items() if d != right)
        out[position] = math.log(column[right]) - math.log(rival)
    return out


def test_the_carry_margin_holds_on_counter_and_fades_on_counter_post(
    visit: Visit, post_card: ModelCard
) -> None:
    # a few more nines than counter-post's first failing run: its carry is lost on the way
    failure = post_card.metrics.carry_scan.first_failure
    assert failure is not None
    nines = failure.nines + 2
    number = "3" + "9" * nines
    page = visit.open()
    ask(page, number, "counter")
    shown = margins(page)
    assert sorted(shown) == list(range(nines + 1))  # the nines and the digit that spends the carry
    assert shown == pytest.approx(margins_from_cells(page), abs=1e-3)
    assert all(m > 0 for m in shown.values())
    assert page.locator("#grid tr.digits.margin td.lost").count() == 0
    assert "the carry holds" in page.locator("#heatmap-text").inner_text()
    # Reading nines from the start is core.dynamics' carry chain: the same margins (float32
    # in onnxruntime here, float64 there).
    chain = carry_chain(recurrent_weights_from_onnx(MODELS / "counter.onnx"), nines)
    for position in range(nines):
        assert shown[position] == pytest.approx(chain.output_margin[position + 1], abs=1e-3)

    ask(page, number, "counter-post")
    shown = margins(page)
    assert shown == pytest.approx(margins_from_cells(page), abs=1e-3)
    assert shown[0] > shown[3] > 0  # fading
    # A step's margin is below zero exactly where the model's digit is wrong.
    wrong = {
        int(p)
        for p in page.locator("#grid tr.digits.model td.wrong").evaluate_all(
            "cells => cells.map(c => c.dataset.position)"
        )
    }
    lost = {p for p, m in shown.items() if m < 0}
    assert lost
    assert lost == {p for p in wrong if p in shown}
    assert page.locator("#grid tr.digits.margin td.lost").count() == len(lost)
    assert "the carry is lost there" in page.locator("#heatmap-text").inner_text()
    visit.shot("counter-post-carry-margin")


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_the_card_shows_carry_attractor_and_links_its_figure(visit: Visit, name: str) -> None:
    card = ModelCard.model_validate_json((MODELS / f"{name}.json").read_text())
    assert card.dynamics is not None
    assert card.dynamics.figure is not None
    page = visit.open()
    ask(page, "7", name)
    claim = str(card.dynamics.carry_attractor).lower()
    item = page.locator(f'#card dd.dynamics[data-carry-attractor="{claim}"]')
    assert item.is_visible()
    assert f"carry_attractor {claim}" in item.inner_text()
    assert f"re-derived it from the loaded weights: {claim}" in item.inner_text()
    link = item.locator("a.dynamics-figure")
    assert link.get_attribute("href") == f"/models/{name}/plots/{card.dynamics.figure}"
    figure = page.request.get(f"{visit.base}/models/{name}/plots/{card.dynamics.figure}")
    assert figure.ok
    assert figure.headers["content-type"] == "image/png"
    assert figure.body() == (MODELS / card.dynamics.figure).read_bytes()
    image = page.locator("#dynamics-figure img")
    image.wait_for()
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
    visit.shot(f"{name}-card-dynamics")
