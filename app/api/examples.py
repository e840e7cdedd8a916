"""The examples /docs shows: real answers of the loaded models and real refusals.

Made by the live service the first time the OpenAPI document is asked for once the models are
loaded (app.api.openapi places them), so a reader of /docs sees what the service sends.
"""

from typing import Any

import orjson

from app import __version__
from app.api.model_metadata import model_config, model_metadata
from app.api.schemas import model_list
from app.api.tensors import SERVER, InferRequest, OutputTensor, write_response
from app.errors import Kind, ServiceError, unknown_model
from app.http.exchange import JSON, NDJSON
from app.runtime.engine import answer
from app.runtime.service import CounterService, count_line
from core.codec import encode_batch


def error_examples(*errors: ServiceError) -> dict[str, Any]:
    return {
        f"{error.kind.label} {i}": {
            "summary": error.message[:60],
            "value": {"error": error.kind.label, "message": error.message, "request_id": "c0ffee"},
        }
        for i, error in enumerate(errors)
    }


def live(schema: dict[str, Any], service: CounterService | None) -> bool:
    """Put the live examples in the document, once the models are loaded; whether it did."""
    if service is None or not service.ready:
        return False
    _live_examples(schema, service)
    return True


def _example(content: dict[str, Any], title: str, value: Any) -> None:
    content.setdefault("examples", {})[title] = {"summary": title, "value": value}


def _live_examples(schema: dict[str, Any], service: CounterService) -> None:
    """Real answers of the loaded models, and the live refusals, as the examples."""
    paths = schema["paths"]

    def real(numbers: list[str], model: str | None, detail: Any) -> Any:
        found = service.registry.find(model)
        if found is None:
            return None
        return orjson.loads(
            orjson.dumps(
                answer(found, numbers, detail, service.options),
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
        )

    ok = paths["/increment"]["post"]["responses"]["200"]["content"][JSON]
    proved = real(["1299"], None, "full")
    if proved:
        _example(ok, "a carry the model gets right, proved", proved[0])
    flagged = real(["999999999999999999"], "counter-post", "none")
    if flagged:
        _example(ok, "the post's model, past its carry", flagged[0])
    batch = real(["1299", "41"], None, "none")
    if batch:
        content = paths["/increment/batch"]["post"]["responses"]["200"]["content"][JSON]
        _example(content, "two numbers", {"results": batch})
    count_ok = paths["/count"]["post"]["responses"]["200"]["content"][NDJSON]
    lines = []
    number = "999999999999999990"
    post_model = service.registry.find("counter-post")
    for index in range(1, 13):
        if post_model is None:
            break
        (result,) = answer(post_model, [number], "none", service.options)
        lines.append(orjson.dumps(count_line(index, result)).decode())
        number = result["output"]
    if lines:
        end = {"done": True, "reason": "count", "sent": len(lines), "wrong": 0}
        wrong = sum('"correct":false' in line for line in lines)
        end["wrong"] = wrong
        count_ok["example"] = "\n".join([*lines, orjson.dumps(end).decode()]) + "\n"
    registry = service.registry
    listed = model_list(registry).model_dump(mode="json")
    for path, value in (("/models", listed), ("/models/{name}", listed["models"][0])):
        paths[path]["get"]["responses"]["200"]["content"][JSON]["example"] = value
    _v2_examples(paths, service)
    settings = service.settings
    live = {
        "404": unknown_model("countr", service.registry.names),
        "413": ServiceError(
            Kind.BODY_TOO_LARGE,
            f"the request body is larger than {settings.max_body_bytes} bytes "
            "(COUNTER_MAX_BODY_BYTES)",
        ),
    }
    for path in ("/increment", "/increment/batch", "/count"):
        for status, error in live.items():
            content = paths[path]["post"]["responses"][status]["content"][JSON]
            content["examples"] = error_examples(error)


def _v2_examples(paths: dict[str, Any], service: CounterService) -> None:
    """The protocol's answers, made by the loaded default model."""
    model = service.registry.models[service.registry.default]
    name, version = model.card.name, model.card.version
    digits = encode_batch(["1299"])
    probs = model.run(digits)
    request = InferRequest(id=None, inputs=[], outputs=None)
    parts, _ = write_response(
        name, version, request, [OutputTensor("probabilities", "FP32", list(probs.shape), probs)]
    )
    body = b"".join(parts)
    ready = {"name": name, "ready": True}
    examples = {
        "/v2": {"name": SERVER, "version": __version__, "extensions": ["binary_tensor_data"]},
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/v2/models/{name}": model_metadata(model),
        "/v2/models/{name}/versions/{version}": model_metadata(model),
        "/v2/models/{name}/ready": ready,
        "/v2/models/{name}/versions/{version}/ready": ready,
        "/v2/models/{name}/config": model_config(model),
    }
    for path, value in examples.items():
        paths[path]["get"]["responses"]["200"].setdefault("content", {})[JSON] = {"example": value}
    inferred = orjson.loads(body)
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        paths[path]["post"]["responses"]["200"].setdefault("content", {})[JSON] = {
            "example": inferred
        }
