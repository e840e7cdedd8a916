// The model card beside the answer: what was measured and proved about the chosen model.
// `onTry(number)` is called by the "Try it" button of the scan's first failure.

import { el } from "./words.js";

const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en") : String(n));

function reliable(metrics) {
  const value = metrics.reliable_carry_length;
  if (value === "unbounded") return "unbounded: proved right for every input, at every length";
  if (value < 0) return "−1: no proof covers any answer";
  return `${fmt(value)}: proved right for every input ending in at most ${fmt(value)} nines`;
}

function rerun(proved) {
  if (proved === "unbounded") return "holds for every input";
  if (proved < 0) return "proves nothing, as the card says";
  return `proves every input ending in at most ${fmt(proved)} nines`;
}

function certificate(cert) {
  const how = `${fmt(cert.boxes)} boxes, ${fmt(cert.iterations)} iterations`;
  if (cert.certified) return `Certified, margin ${cert.margin.toFixed(2)} (logits); ${how}.`;
  return `Not certified (${how}): ${cert.reason}`;
}

// The decided carry length (a checked certificate and a checked failing input), if the card has it.
function decisionText(decision, check) {
  const proved = decision.proved_carry_length;
  const claim = proved === "unbounded" ? "Proved for every run of nines (a carrying set)"
    : proved < 0 ? "Nothing proved" : `Proved K = ${fmt(proved)}`;
  const seconds = !check ? ""
    : check.result === "skipped" ? ` (${check.reason})`
    : ` (checked by this service in ${(check.seconds * 1000).toFixed(0)} ms)`;
  const failure = decision.refutation;
  if (!failure) return `${claim}${seconds}; no failing input found past it.`;
  const where = failure.nines === 0
    ? "decided exactly: the model answers a number with no nine at the end wrong"
    : failure.nines === proved + 1
    ? `decided exactly: the model fails at ${fmt(failure.nines)}`
    : `K lies between ${fmt(proved)} and ${fmt(failure.nines - 1)}: the model fails at ${fmt(failure.nines)}`;
  return `${claim}${seconds}; ${where} (e.g. ${failure.example} + 1 gave ${failure.got}).`;
}

function scanText(scan) {
  const scope = `every run of 1 to ${fmt(scan.scanned_up_to)} nines, each next digit (${fmt(scan.cases)} cases, ${scan.engine})`;
  if (!scan.failing_runs.length) return `No wrong answer in ${scope}.`;
  const runs = scan.failing_runs.map(([a, b]) => (a === b ? fmt(a) : `${fmt(a)}–${fmt(b)}`)).join(", ");
  return `Wrong answers for runs of ${runs} nines, in ${scope}; exact up to ${fmt(scan.longest_exact_run)} nines.`;
}

const plotUrl = (model, file) =>
  `/models/${encodeURIComponent(model.name)}/plots/${encodeURIComponent(file)}`;

/** The card's carry dynamics (python -m training explain) and this service's re-derivation. */
function dynamicsItem(model) {
  const d = model.dynamics;
  const dd = el("dd", { class: "dynamics", "data-carry-attractor": String(d.carry_attractor) });
  const how = d.carry_attractor
    ? "true: the map “read a 9” has a stable fixed point that reads out the carry, and the carry chain settles on it, so the carry lasts for ever."
    : `false: no stable fixed point of the map “read a 9” reads out the carry; the carry chain is a transient that leaves it${d.lost_at === null ? "" : ` at ${fmt(d.lost_at)} nines`}.`;
  dd.append(`carry_attractor ${how}`);
  const served = model.serving.carry_attractor;
  if (served !== null && served !== undefined) {
    dd.append(` This service re-derived it from the loaded weights: ${served}.`);
  }
  if (d.figure) {
    dd.append(" ", el("a", { href: plotUrl(model, d.figure), class: "dynamics-figure", text: `The figure: ${d.figure}` }));
  }
  return dd;
}

function accuracyTable(rows) {
  const body = rows.map((r) =>
    el("tr", {},
      el("th", { scope: "row", text: fmt(r.length) }),
      el("td", { text: `${fmt(r.correct)} / ${fmt(r.samples)}` }),
      el("td", { class: r.accuracy < 1 ? "bad" : "", text: (r.accuracy * 100).toFixed(1) + "%" })));
  return el("table", { class: "accuracy" },
    el("caption", { text: "Accuracy by length (random numbers, exact whole-number match)" }),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col", text: "Digits" }), el("th", { scope: "col", text: "Right" }),
      el("th", { scope: "col", text: "Accuracy" }))),
    el("tbody", {}, ...body));
}

/** The card of `model` (a GET /models entry) into `root`. */
export function renderCard(root, model, onTry) {
  const m = model.metrics;
  const proved = m.reliable_carry_length === "unbounded";
  const items = [
    ["Reliable carry length", reliable(m)],
    ["Certificate", certificate(m.certificate)],
    ["Tested length", `every tested length up to ${fmt(m.tested_length)} digits was exact`],
    ["Carry scan", scanText(m.carry_scan)],
  ];
  const list = el("dl", {});
  for (const [term, text] of items) list.append(el("dt", { text: term }), el("dd", { text }));
  if (model.dynamics) list.append(el("dt", { text: "Carry dynamics" }), dynamicsItem(model));
  const failure = m.carry_scan.first_failure;
  if (failure) {
    const tryIt = el("button", { type: "button", class: "try", "data-try": failure.example, text: `Try ${failure.example}` });
    tryIt.addEventListener("click", () => onTry(failure.example));
    list.append(
      el("dt", { text: "First failure" }),
      el("dd", { class: "failure" },
        `${failure.example} + 1: the model said ${failure.got}, exact ${failure.expected}. `, tryIt));
  }
  if (m.decision) {
    const failure = m.decision.refutation;
    const dd = el("dd", { class: "decision" }, decisionText(m.decision, model.serving.decision), " ");
    // One "Try" button per input: the scan's first failure may be this same input.
    if (failure && failure.example !== m.carry_scan.first_failure?.example) {
      const tryIt = el("button", { type: "button", class: "try", "data-try": failure.example, text: `Try ${failure.example}` });
      tryIt.addEventListener("click", () => onTry(failure.example));
      dd.append(tryIt);
    }
    list.append(el("dt", { text: "Decided carry length" }), dd);
  }
  const serving = model.serving;
  list.append(
    el("dt", { text: "Checked by this service" }),
    el("dd", { text: `The proof, re-run on the loaded weights at start, ${rerun(serving.proved_carry_length)}; ${fmt(serving.warm_up_answers)} warm-up answers were checked against exact arithmetic.` }),
  );
  const dynamicsFigure = model.dynamics?.figure;
  const figures = model.plots.map((file) => {
    const carry = file === dynamicsFigure;
    const img = el("img", {
      src: plotUrl(model, file),
      alt: carry
        ? `The carry dynamics of ${model.name}. Left: the carry margin after each run of nines. ` +
          "Right: the carry chain's states and the fixed points of the maps, in their two main directions."
        : `Plots from the card of ${model.name}. Left: exact-match accuracy by number length. ` +
          `Right: the probability of the right digit when carrying through k trailing nines. ${model.notes}`,
      width: 1100,
      height: 440,
    });
    img.addEventListener("error", () => img.replaceWith(el("p", { class: "help", text: `The plot ${file} is not available from this service.` })));
    const caption = carry
      ? `${file}: the carry margin by run of nines, and the states with the fixed points (python -m training explain).`
      : `${file}: accuracy by length, and carrying through runs of nines.`;
    return el("figure", carry ? { id: "dynamics-figure" } : {}, img, el("figcaption", { text: caption }));
  });
  root.replaceChildren(
    el("h3", { class: "card-name" }, `${model.name} `, el("small", { text: `v${model.version}, ${model.architecture.cell} ${model.architecture.hidden_size} hidden` })),
    el("p", { class: proved ? "badge proved" : "badge unproved", text: proved ? "✓ Proved for every input" : "✗ No proof for every input" }),
    list,
    accuracyTable(m.accuracy_by_length),
    ...figures,
    model.notes ? el("p", { class: "help", text: model.notes }) : "",
  );
}
