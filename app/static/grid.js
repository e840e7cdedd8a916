// The answer digit under digit and the heatmap of every step's 10 probabilities, in one
// table so the columns cannot drift apart. Least significant on the right, as people write
// numbers. A long number shows a window of columns that fits the width; `render` draws the
// window starting at position `low`.

import { el, sr } from "./words.js";

// Viridis (matplotlib), 9 stops: perceptually even and readable with red-green colour
// blindness; dark is unlikely, yellow likely. explorer.css draws the legend from the same stops.
const VIRIDIS = [
  [68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
  [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37],
];
const LOG_FLOOR = 6; // the log scale spans 1e-6 .. 1

export function colour(p, log) {
  let t = log ? (Math.log10(Math.max(p, 10 ** -LOG_FLOOR)) + LOG_FLOOR) / LOG_FLOOR : p;
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t));
  const f = t - i;
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]];
  return `rgb(${a.map((x, k) => Math.round(x + (b[k] - x) * f)).join(",")})`;
}

function percent(p) {
  if (p >= 0.9999 && p < 1) return ">99.99%";
  if (p < 0.0001) return "<0.01%";
  return (p * 100).toFixed(2) + "%";
}

// ln of float32's smallest normal number: a rival whose probability rounds to 0 is at least
// this far below (in logits) any digit with a normal probability.
const LN_FLOAT32_TINY = Math.log(1.17549435e-38);

/** The right digit's logit minus the best rival's, from the step's probabilities (a softmax
 * keeps logit differences: ln p_right - ln p_rival). `bound` when the rival's rounds to 0. */
export function margin(probabilities, right) {
  let rival = 0;
  probabilities.forEach((p, d) => { if (d !== right && p > rival) rival = p; });
  const own = Math.log(probabilities[right]);
  if (rival === 0) return { value: own - LN_FLOAT32_TINY, bound: true };
  return { value: own - Math.log(rival), bound: false };
}

/** Everything the table shows, by position (0 = units), from one answer with its steps and
 * the number sent (the answer's `input` is cut beyond COUNTER_ECHO_DIGITS). */
export function columns(answer, input) {
  const exact = answer.check.expected ?? answer.output;
  const run = answer.carry_run;
  return answer.steps.map((step) => {
    const p = step.position;
    const exactDigit = p < exact.length ? Number(exact[exact.length - 1 - p]) : 0;
    return {
      position: p,
      input: p < input.length ? input[input.length - 1 - p] : "",
      model: step.output_digit,
      modelLeading: p >= answer.output.length, // a leading zero: not written
      exact: exactDigit,
      exactLeading: p >= exact.length,
      wrong: step.output_digit !== exactDigit,
      carry: p === 0 ? "+1" : p <= run ? "1" : "",
      inRun: p <= run,
      probabilities: step.probabilities,
      probability: step.probability,
      // Along the carry run (the nines, then the digit that spends the carry): the right
      // digit's margin over its best rival, so the carry is seen fading or holding.
      margin: p <= run ? margin(step.probabilities, exactDigit) : null,
    };
  });
}

function digitRow(name, label, cols, cell) {
  const row = el("tr", { class: `digits ${name}` }, el("th", { scope: "row", text: label }));
  for (const col of cols) row.append(cell(col));
  return row;
}

/** Draw positions low .. low + width - 1 of `cols` into `table` (left: the highest). */
export function render(table, cols, low, width, log) {
  const shown = cols.slice(low, low + width).reverse();
  const head = el("tr", {}, el("th", { scope: "col", class: "corner", text: "position" }));
  for (const col of shown) {
    head.append(el("th", { scope: "col", class: col.inRun ? "pos run" : "pos", "data-position": col.position, text: String(col.position) }));
  }
  const body = [
    digitRow("carry", "carry", shown, (c) =>
      el("td", { class: c.inRun ? "run" : "" }, c.carry ? el("span", { "aria-hidden": "true", text: c.carry }) : "",
        c.carry ? sr(c.position === 0 ? "one added" : "one carried in") : "")),
    digitRow("input", "input", shown, (c) =>
      el("td", { class: c.inRun ? "run" : "", text: c.input })),
    digitRow("model", "model", shown, (c) =>
      el("td", { class: [c.inRun ? "run" : "", c.modelLeading ? "leading" : "", c.wrong ? "wrong" : ""].join(" ").trim(), "data-position": c.position, text: String(c.model) })),
    digitRow("exact", "exact", shown, (c) =>
      el("td", { class: [c.inRun ? "run" : "", c.exactLeading ? "leading" : ""].join(" ").trim(), text: String(c.exact) })),
    digitRow("check", "check", shown, (c) =>
      el("td", { class: c.wrong ? "wrong" : "" }, c.wrong ? el("span", { "aria-hidden": "true", text: "✗" }) : "",
        sr(c.wrong ? "wrong" : "right"))),
  ];
  for (let digit = 0; digit < 10; digit++) {
    const row = el("tr", { class: "probs" }, el("th", { scope: "row", text: `P(${digit})` }));
    for (const c of shown) {
      const p = c.probabilities[digit];
      const marks = [c.model === digit ? "chosen" : "", c.wrong && c.exact === digit ? "right" : ""];
      const cell = el("td", {
        class: ["cell", ...marks].join(" ").trim(),
        "data-digit": digit,
        "data-position": c.position,
        "data-p": String(p),
        title: `position ${c.position}: P(${digit}) = ${percent(p)}`,
      }, sr(percent(p) + (marks[0] ? ", chosen" : "") + (marks[1] ? ", the right digit" : "")));
      cell.style.backgroundColor = colour(p, log);
      row.append(cell);
    }
    body.push(row);
  }
  body.push(digitRow("margin", "margin", shown, (c) => {
    if (c.margin === null) return el("td", {});
    const { value, bound } = c.margin;
    const text = (bound ? "≥" : "") + value.toFixed(1);
    return el("td", {
      class: value > 0 ? "margin holds" : "margin lost",
      "data-position": c.position,
      "data-margin": String(value),
      title: `position ${c.position}: the right digit ${c.exact} beats its best rival by ${text} in logits`,
    }, text);
  }));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...body);
}

/** The heatmap's text alternative: how sure the model was, where it went wrong, the carry. */
export function describe(answer, cols) {
  const parts = [];
  const weakest = cols.reduce((a, b) => (b.probability < a.probability ? b : a));
  const second = (c) => {
    const ranked = c.probabilities.map((p, d) => [p, d]).sort((x, y) => y[0] - x[0]);
    return ranked[1];
  };
  const [p2, d2] = second(weakest);
  parts.push(
    `${cols.length} steps. The least sure step is position ${weakest.position}: the model chose ${weakest.model} ` +
    `with probability ${percent(weakest.probability)} (next most likely: ${d2}, ${percent(p2)}).`,
  );
  const run = answer.carry_run;
  parts.push(run === 0
    ? "The input does not end in 9: the one added stops at the units digit."
    : `The input ends in ${run} nine${run === 1 ? "" : "s"}: the carry runs through positions 0 to ${run - 1} and lands at position ${run}.`);
  parts.push(marginSentence(cols));
  const wrong = cols.filter((c) => c.wrong);
  if (wrong.length) {
    const first = wrong[0];
    parts.push(
      `The model went wrong at ${wrong.length} position${wrong.length === 1 ? "" : "s"}, first at position ${first.position}: ` +
      `it chose ${first.model} (${percent(first.probability)}) where ${first.exact} is right ` +
      `(${percent(first.probabilities[first.exact])}).`,
    );
  } else {
    parts.push("Every digit the model chose is right.");
  }
  return parts.join(" ");
}

/** The carry margin along the run, in words: its first and last values and where it fails. */
export function marginSentence(cols) {
  const along = cols.filter((c) => c.margin !== null);
  const fmt = (c) => (c.margin.bound ? "≥" : "") + c.margin.value.toFixed(1);
  const first = along[0];
  const last = along[along.length - 1];
  const lost = along.find((c) => c.margin.value <= 0);
  const span = along.length === 1
    ? `The right digit's margin over its best rival at position 0 is ${fmt(first)} (logits).`
    : `Along the carry run the right digit's margin over its best rival goes from ${fmt(first)} at position 0 to ${fmt(last)} at position ${last.position} (logits).`;
  return lost
    ? `${span} It falls to ${fmt(lost)} at position ${lost.position}: the carry is lost there.`
    : `${span} It stays above zero: the carry holds.`;
}
