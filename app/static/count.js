// Counting: POST /count read line by line as the service streams it, each number shown as
// it comes (paced so a person can watch), and a Stop button that aborts the fetch.

import * as api from "./api.js";
import { FLAGS, el, preview, raised, refusedNumber, sr, tail, typingProblem } from "./words.js";

const LOG_ROWS = 500; // rows kept on the page; a count may run to 10 000
const ODOMETER_DIGITS = 24;
const $ = (id) => document.getElementById(id);

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** The model's answer with the digits that changed since the last one marked to flip. */
function odometer(target, number, previous) {
  const shown = tail(number, ODOMETER_DIGITS);
  const before = tail(previous, ODOMETER_DIGITS).padStart(shown.length, " ");
  const digits = [...shown].map((d, i) => {
    const changed = before[before.length - shown.length + i] !== d;
    return el("span", { class: changed ? "flip" : "", text: d });
  });
  target.replaceChildren(...digits);
}

function badge(ok, yes, no) {
  return el("span", { class: ok ? "badge proved" : "badge unproved", text: ok ? yes : no });
}

function logRow(line) {
  const words = raised(line.flags);
  return el("tr", { class: line.correct ? "" : "wrong", "data-index": line.index },
    el("td", { text: String(line.index) }),
    el("td", { class: "num", text: tail(line.input, 30) }),
    el("td", { class: "num answer", text: tail(line.output, 30) }),
    el("td", { class: "num exact", text: tail(line.expected, 30) }),
    el("td", { class: "ok" }, el("span", { "aria-hidden": "true", text: line.correct ? "✓" : "✗" }), sr(line.correct ? "right" : "wrong")),
    el("td", { class: "proved", text: line.proved ? "proved" : "no" }),
    el("td", { class: "flag-words", title: line.warnings.join(" ") , text: words.map((w) => FLAGS[w][0]).join(", ") || "none" }),
  );
}

function ending(end, last) {
  const counted = `${end.sent.toLocaleString("en")} number${end.sent === 1 ? "" : "s"} counted, ${end.wrong} wrong`;
  switch (end.reason) {
    case "error":
      return `Stopped at the first wrong answer (number ${last.index}): ${preview(last.input)} + 1 — ` +
        `the model said ${preview(last.output)}, exact ${preview(last.expected)}. ${counted}.`;
    case "time_limit":
      return `The service stopped the count at its time limit (COUNTER_MAX_COUNT_SECONDS). ${counted}.`;
    case "shutdown":
      return `The service is stopping, so the count ended early${last ? `; count on from ${preview(last.output)} shortly` : ""}. ${counted}.`;
    default:
      return `Done: ${counted}.`;
  }
}

/** Wire the count panel. `model()` is the chosen model; `choose(name)` picks another. */
export function setupCount(model, choose) {
  const form = $("count-form");
  const go = $("count-go");
  const stop = $("count-stop");
  const status = $("count-status");
  const log = $("count-log").tBodies[0];
  const scroller = $("count-log").parentElement;
  let controller = null;

  async function run() {
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    const start = $("count-start").value.replace(/[\s_,]/g, "");
    const problem = typingProblem(start);
    if (problem) {
      status.textContent = problem;
      status.dataset.reason = "failed";
      return;
    }
    const request = {
      start,
      count: Number($("count-n").value),
      model: model(),
      stop_on_error: $("count-stop-on-error").checked,
    };
    const pace = Number($("count-pace").value);
    log.replaceChildren();
    $("odo-badges").replaceChildren();
    $("odometer").hidden = false;
    const focused = document.activeElement === go;
    go.disabled = true;
    stop.disabled = false;
    if (focused) stop.focus(); // a disabled button drops the focus: keep it on the controls
    status.textContent = `Counting with ${request.model} from ${preview(start)}…`;
    let previous = start;
    let previousExact = start;
    let last = null;
    let sent = 0;
    try {
      for await (const line of api.count(request, mine.signal)) {
        if (mine.signal.aborted) break;
        if (line.done) {
          status.textContent = ending(line, last);
          status.dataset.reason = line.reason;
          break;
        }
        last = line;
        sent = line.index;
        log.append(logRow(line));
        if (log.rows.length > LOG_ROWS) log.rows[0].remove();
        scroller.scrollTop = scroller.scrollHeight; // keep the newest number in view
        odometer($("odo-model"), line.output, previous);
        odometer($("odo-exact"), line.expected, previousExact);
        $("odo-badges").replaceChildren(
          badge(line.correct, "✓ right", "✗ wrong"), badge(line.proved, "✓ proved", "not proved"));
        $("odometer").classList.toggle("broken", !line.correct);
        previous = line.output;
        previousExact = line.expected;
        if (pace) await sleep(pace, mine.signal);
      }
      if (mine.signal.aborted) throw new DOMException("stopped", "AbortError");
    } catch (error) {
      if (error.name === "AbortError") {
        status.textContent = `Stopped: ${sent} number${sent === 1 ? "" : "s"} shown.`;
        status.dataset.reason = "stopped";
      } else {
        const said = error.kind === "invalid_number" ? refusedNumber(error.message) : error.message;
        status.textContent = `The count could not run: ${said}`;
        status.dataset.reason = "failed";
      }
    } finally {
      if (controller === mine) {
        controller = null;
        const focused = document.activeElement === stop;
        go.disabled = false;
        stop.disabled = true;
        if (focused) go.focus();
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  stop.addEventListener("click", () => controller?.abort());
  for (const preset of document.querySelectorAll(".preset")) {
    preset.addEventListener("click", () => {
      choose(preset.dataset.model);
      $("count-start").value = preset.dataset.start;
      $("count-n").value = preset.dataset.count;
      run();
    });
  }
}
