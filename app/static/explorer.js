// The explorer: a number and a model in, the answer digit under digit with the heatmap, the
// flags, the proof and the model card out; then the count panel (count.js).

import * as api from "./api.js";
import { renderCard } from "./card.js";
import { setupCount } from "./count.js";
import { columns, describe, render } from "./grid.js";
import { FLAGS, el, preview, raised, refusedNumber, typingProblem } from "./words.js";

const $ = (id) => document.getElementById(id);
const TYPING_PAUSE_MS = 250; // answer once typing pauses, not at every key

const state = {
  cards: new Map(), // model name -> GET /models entry
  model: null,
  number: "",
  answer: null,
  cols: [], // grid.columns of the answer
  low: 0, // lowest position in the window
  width: 0, // columns in the window
  request: null, // AbortController of the answer being fetched
};

function chosenModel() {
  return document.querySelector('input[name="model"]:checked')?.value ?? state.model;
}

function chooseModel(name) {
  const radio = document.querySelector(`input[name="model"][value="${CSS.escape(name)}"]`);
  if (radio && !radio.checked) {
    radio.checked = true;
    modelChanged();
  }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// --- the window of columns ------------------------------------------------------------------

/** How many columns fit the table's width (cell and row-header sizes come from the CSS). */
function fitting() {
  const css = getComputedStyle($("grid"));
  const cell = parseFloat(css.getPropertyValue("--cell-px")) || 26;
  const head = parseFloat(css.getPropertyValue("--head-px")) || 56;
  return Math.max(4, Math.floor(($("grid-wrap").clientWidth - head - 4) / cell));
}

function drawWindow() {
  const total = state.cols.length;
  state.width = Math.min(total, fitting());
  state.low = Math.max(0, Math.min(state.low, total - state.width));
  render($("grid"), state.cols, state.low, state.width, $("log-scale").checked);
  const windowed = state.width < total;
  $("window").hidden = !windowed;
  const high = state.low + state.width - 1;
  const range = `positions ${high.toLocaleString("en")} to ${state.low.toLocaleString("en")} of ${total.toLocaleString("en")} steps`;
  $("grid-caption").textContent = windowed
    ? `Digit by digit, least significant on the right: ${range}.`
    : `Digit by digit, least significant on the right: all ${total} steps (position 0 is the units digit; the last is the extra step that holds a carry out).`;
  $("grid").dataset.low = state.low;
  $("grid").dataset.width = state.width;
  $("grid").dataset.total = total;
  if (windowed) {
    $("window-text").textContent = `Showing ${range} (${state.width} fit the width).`;
    const slider = $("window-slider");
    slider.max = total - state.width;
    // The slider runs left to right like the digits: left shows the highest positions.
    slider.value = total - state.width - state.low;
    slider.setAttribute("aria-valuetext", range);
    $("window-higher").disabled = high >= total - 1;
    $("window-lower").disabled = state.low === 0;
    const wrong = state.cols.find((c) => c.wrong);
    $("window-wrong").hidden = !wrong;
  }
}

function moveWindow(low) {
  state.low = low;
  drawWindow();
}

/** Put `position` in the window, a few columns from its right edge. */
function showPosition(position) {
  moveWindow(Math.max(0, position - Math.floor(state.width / 4)));
}

// --- one answer -----------------------------------------------------------------------------

function verdict(answer, number) {
  const sum = `${answer.model.name}: ${preview(number)} + 1 = ${preview(answer.output)}.`;
  const right = answer.check.correct
    ? " Right."
    : ` Wrong: the exact answer is ${preview(answer.check.expected)}.`;
  const proof = answer.proved
    ? " Proved: the model's certificate covers this input, so the answer is right."
    : " Not proved: no proof covers this answer.";
  return sum + right + proof;
}

function renderFlags(answer) {
  const items = [
    el("li", { class: answer.proved ? "proved" : "unproved", "data-flag": answer.proved ? "proved" : "not_proved" },
      el("strong", { text: answer.proved ? "✓ Proved. " : "✗ Not proved. " }),
      answer.proved
        ? `The carry run (${answer.carry_run}) is within the reliable carry length (${answer.reliable_carry_length}).`
        : `Reliable carry length ${answer.reliable_carry_length}; this input's carry run is ${answer.carry_run}.`),
  ];
  for (const name of raised(answer.flags)) {
    const [short, sentence] = FLAGS[name];
    items.push(el("li", { class: "flag", "data-flag": name }, el("strong", { text: `⚑ ${short}: ` }), sentence));
  }
  if (items.length === 1) items.push(el("li", { "data-flag": "none", text: "No flags raised." }));
  $("flags").replaceChildren(...items);
  $("warnings").replaceChildren(...answer.warnings.map((w) => el("li", { text: w })));
}

function show(answer, number, stepsRefused) {
  state.answer = answer;
  state.number = number;
  $("verdict").textContent = verdict(answer, number);
  $("verdict").className = answer.check.correct ? "verdict right" : "verdict wrong";
  $("verdict").dataset.number = number; // which question this answers (for tests and styles)
  $("verdict").dataset.model = answer.model.name;
  $("answer").hidden = false;
  renderFlags(answer);
  if (stepsRefused) {
    state.cols = [];
    $("grid-wrap").hidden = true;
    $("window").hidden = true;
    $("heatmap-text").textContent = `No steps to show: ${stepsRefused}`;
    return;
  }
  $("grid-wrap").hidden = false;
  state.cols = columns(answer, number);
  state.low = 0; // the units end first: that is where the carry is
  drawWindow();
  $("heatmap-text").textContent = describe(answer, state.cols);
}

async function ask() {
  const number = $("number").value.replace(/\s/g, ""); // pasted digits often carry line breaks
  state.request?.abort();
  if (!number) {
    showError("");
    $("verdict").textContent = "Type a number to see the model add one.";
    $("answer").hidden = true;
    return;
  }
  const problem = typingProblem(number); // said at once, in a typist's words, not the API's
  if (problem) {
    showError(problem);
    $("verdict").textContent = "";
    $("answer").hidden = true;
    return;
  }
  const mine = new AbortController();
  state.request = mine;
  try {
    const { answer, stepsRefused } = await api.increment(number, chosenModel(), mine.signal);
    if (state.request !== mine) return; // a newer question is on its way
    showError("");
    show(answer, number, stepsRefused);
  } catch (error) {
    if (error.name === "AbortError") return;
    showError(error.kind === "invalid_number" ? refusedNumber(error.message) : error.message);
    $("verdict").textContent = "";
    $("answer").hidden = true;
  }
}

let typing = 0;
function typed() {
  clearTimeout(typing);
  typing = setTimeout(ask, TYPING_PAUSE_MS);
}

function modelChanged() {
  state.model = chosenModel();
  $("count-model").textContent = state.model;
  const card = state.cards.get(state.model);
  if (card) renderCard($("card-body"), card, (example) => {
    $("number").value = example;
    ask();
  });
  ask();
}

// --- start ----------------------------------------------------------------------------------

function modelChoices(list) {
  const box = $("models");
  const radios = list.models.map((m) => {
    const proved = m.metrics.reliable_carry_length === "unbounded";
    const id = `model-${m.name}`;
    const input = el("input", { type: "radio", name: "model", id, value: m.name, checked: m.name === list.default });
    input.addEventListener("change", modelChanged);
    return el("div", { class: "choice" }, input,
      el("label", { htmlFor: id }, el("strong", { text: m.name }), ` — ${proved ? "proved for every input" : "no proof"}`));
  });
  $("models-loading").remove();
  box.append(...radios);
}

async function start() {
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    ask();
  });
  $("number").addEventListener("input", typed);
  $("log-scale").addEventListener("change", () => {
    $("legend-low").textContent = $("log-scale").checked ? "10⁻⁶" : "0";
    if (state.cols.length) drawWindow();
  });
  $("window-higher").addEventListener("click", () => moveWindow(state.low + state.width));
  $("window-lower").addEventListener("click", () => moveWindow(state.low - state.width));
  $("window-slider").addEventListener("input", (event) =>
    moveWindow(state.cols.length - state.width - Number(event.target.value)));
  $("window-carry").addEventListener("click", () => showPosition(state.answer.carry_run));
  $("window-wrong").addEventListener("click", () => {
    const wrong = state.cols.find((c) => c.wrong);
    if (wrong) showPosition(wrong.position);
  });
  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => state.cols.length && drawWindow(), 100);
  });
  setupCount(chosenModel, chooseModel);
  try {
    const list = await api.models();
    for (const m of list.models) state.cards.set(m.name, m);
    modelChoices(list);
    modelChanged();
  } catch (error) {
    showError(`The model cards could not be loaded: ${error.message}`);
  }
  document.body.dataset.ready = "true"; // for tests: the page has wired itself up
}

start();
