"""`python -m app` (or `rnn-counter-serve`): load and check the models, then serve them.

Models are loaded before the server starts, so a faulty default model or an empty models
folder stops the process with one line naming the file and the reason, and exit status 2.
"""

import logging
import signal
import sys
from types import FrameType

import orjson
from pydantic import ValidationError

from app import process, workers
from app.settings import Settings


class JsonLines(logging.Formatter):
    """Every log line one JSON object, like the access lines (app.http.access_log), so that one log
    pipeline reads start-up, errors and requests alike; a traceback stays inside its line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (and Ctrl-C) is the normal way to stop: uvicorn shuts down gracefully, then
    re-raises the signal to the handler it found, this one, so the process exits 0, not 143."""
    raise SystemExit(0)


def main() -> None:
    process.tune()  # before anything allocates much, or any thread starts
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "COUNTER_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        print(f"error: {name}: {first['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    handler = logging.StreamHandler()  # stderr; the access lines go to stdout
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    logging.captureWarnings(True)  # a library's warning is a log line too, not free text
    count = workers.wanted(settings)
    if count > 1 and settings.model_control == "explicit":
        # A load or unload reaches the one worker that takes the request: the others would go
        # on serving the old models. Polling the folder keeps every worker the same.
        print(
            f"error: COUNTER_MODEL_CONTROL=explicit needs one worker (COUNTER_WORKERS=1), not "
            f"{count}: a load reaches one worker only; use COUNTER_MODEL_CONTROL=poll",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if count > 1 and not workers.is_worker():
        # The supervisor: it loads no model; each worker is this same command, and says why
        # it cannot start (the supervisor then stops with its status).
        raise SystemExit(workers.supervise(settings, count))
    # Only a worker (or the single process) imports the serving stack: the supervisor stays small.
    from app import tracing
    from app.http import server
    from app.main import create_app
    from app.metrics import REQUESTS_IN_PROGRESS
    from app.runtime.models import ModelLoadError
    from app.runtime.registry import load_registry

    try:
        tracing.configure()  # off unless the OTEL_* variables ask for it
    except tracing.TracingError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        registry = load_registry(
            settings.models_dir,
            settings.default_model,
            settings.max_model_bytes,
            settings.walked_certificates,
        )
    except ModelLoadError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)  # Ctrl-C: the same clean stop, no traceback
    app = create_app(settings, registry)
    if workers.is_worker():
        workers.sample_every_second(REQUESTS_IN_PROGRESS, lambda: app.traffic.in_flight)
    server.run(app, settings, workers.inherited_socket(), app.traffic)


if __name__ == "__main__":
    main()
