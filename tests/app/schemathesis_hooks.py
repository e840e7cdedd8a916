"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.app.schemathesis_hooks): read POST /count's
NDJSON stream as the array of its lines, so every line is checked against the schema."""

from typing import Any

import orjson
import schemathesis


@schemathesis.deserializer("application/x-ndjson")
def ndjson(ctx: Any, response: Any) -> list[Any]:
    """Each line of the stream, parsed."""
    return [orjson.loads(line) for line in response.content.splitlines() if line]
