// What the page says in words: numbers cut to a readable length, and the flags explained.

/** A long number cut to its ends, as the service cuts its own echoes. */
export function preview(number, keep = 12) {
  if (number.length <= 2 * keep + 3) return number;
  return `${number.slice(0, keep)}…${number.slice(-keep)} (${number.length.toLocaleString("en")} digits)`;
}

/** The last `keep` digits, for a display with room for few. */
export function tail(number, keep) {
  return number.length <= keep ? number : "…" + number.slice(-(keep - 1));
}

/** What is wrong with a typed number, in the words of a person typing; "" when it is a number. */
export function typingProblem(text) {
  const stray = [...text].find((c) => c < "0" || c > "9");
  if (stray === undefined) return "";
  return `Type a whole number, digits only (like 1299): “${preview(text)}” has “${stray}”.`;
}

/** The service's refusal of a number, without the API's list of what JSON it accepts. */
export function refusedNumber(message) {
  const problem = message.split("; accepted:")[0];
  return `The ${problem}.`;
}

/** Each flag the service raises, in words (short, and a sentence). */
export const FLAGS = {
  beyond_reliable_carry: ["beyond reliable carry", "No proof covers this answer: the input has more trailing nines than the model's proved reliable carry length."],
  known_failing_carry: ["known failing carry", "The model card's carry scan found wrong answers for inputs ending in this many nines."],
  beyond_tested_length: ["beyond tested length", "The input is longer than every length the model was tested exact on."],
  low_confidence: ["low confidence", "At least one step chose its digit with a low probability."],
};

/** The raised flags of an answer or a count line, in the order of FLAGS. */
export function raised(flags) {
  return Object.keys(FLAGS).filter((name) => flags[name]);
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "scope" || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

/** Text only screen readers hear (the visual shows it otherwise). */
export function sr(text) {
  return el("span", { class: "sr", text });
}
