// Calls to this service only (same origin, relative paths): the model cards, one answer,
// and a count read line by line from its NDJSON stream.

/** An error the service answered in its shape {error, message}, or a network failure. */
export class ServiceError extends Error {
  constructor(kind, message, status) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

async function failure(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: the status line is all there is to say
  }
  return new ServiceError(
    body.error || "http_" + response.status,
    body.message || `the service answered ${response.status} ${response.statusText}`,
    response.status,
  );
}

async function post(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  return response;
}

/** GET /models: {default, models: [card + serving], skipped}. */
export async function models() {
  const response = await fetch("/models");
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** POST /increment with every step's probabilities; falls back to no steps when the
 * service refuses that much detail (COUNTER_MAX_DETAIL_DIGITS), saying so. */
export async function increment(number, model, signal) {
  try {
    const response = await post("/increment", { number, model, detail: "full" }, signal);
    return { answer: await response.json(), stepsRefused: null };
  } catch (error) {
    if (!(error instanceof ServiceError) || error.kind !== "too_much_detail") throw error;
    const response = await post("/increment", { number, model, detail: "none" }, signal);
    return { answer: await response.json(), stepsRefused: error.message };
  }
}

/** POST /count: yields each NDJSON line as an object, as it arrives; abort `signal` to stop. */
export async function* count(request, signal) {
  const response = await post("/count", request, signal);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line.trim()) yield JSON.parse(line);
      }
    }
    if (buffer.trim()) yield JSON.parse(buffer);
  } finally {
    reader.releaseLock();
  }
}
