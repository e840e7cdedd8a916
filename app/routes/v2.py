"""The Open Inference Protocol (KServe V2) over the same CounterService as the counter's JSON.

Two ways into a model:
- raw: `digits` INT64 [batch, time] -> `probabilities` FP32 [batch, time, 10], exactly the ONNX
  contract (digits least significant first, zero padded, with the extra zero step);
- the counter's own: `number` BYTES [batch] (decimal strings, the input rules of /increment) ->
  `output` BYTES, `probabilities` FP32 [batch, longest + 1, 10], `carry_run` INT64,
  `beyond_reliable_carry` BOOL, `proved` BOOL, `correct` BOOL.
Errors are {"error": "<message>"} (app.edge writes that shape under /v2) with the same limits and
statuses as the counter's JSON. tritonclient and the kserve package's client both speak this.
"""

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import docs
from app.errors import Kind, ServiceError, preview
from app.exchange import (
    ClientGone,
    declared_length,
    json_reply,
    read_body,
    reply,
    require_tensor_media,
    service_of,
)
from app.inputs import parse_number
from app.registry import LoadedModel
from app.routes.lean import LeanRoute
from app.service import CounterService
from app.tensors import (
    HEADER_LENGTH,
    SERVER,
    InferInput,
    InferRequest,
    OutputTensor,
    model_metadata,
    parse_request,
    write_response,
)

router = APIRouter(
    prefix="/v2", tags=["Open Inference Protocol (KServe V2)"], route_class=LeanRoute
)

RAW_OUTPUTS = ("probabilities",)
NUMBER_OUTPUTS = (
    "output",
    "probabilities",
    "carry_run",
    "beyond_reliable_carry",
    "proved",
    "correct",
)


def _path(request: Request) -> tuple[str, str | None]:
    """The model name and version (None: any) in the path."""
    params = request.path_params
    return params["name"], params.get("version")


def _model(request: Request, name: str, version: str | None = None) -> LoadedModel:
    model = service_of(request).model(name)
    if version is not None and version != model.card.version:
        raise ServiceError(
            Kind.UNKNOWN_MODEL,
            f"model {preview(name)} has no version {preview(version)}; it has {model.card.version}",
        )
    return model


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> Response:
    """The server's name, version and protocol extensions."""
    return json_reply(
        {"name": SERVER, "version": request.app.version, "extensions": ["binary_tensor_data"]}
    )


@router.get("/", summary="Server metadata", include_in_schema=False)
async def server_metadata_slash(request: Request) -> Response:
    """/v2/, as the protocol's document spells it."""
    return await server_metadata(request)


@router.get("/health/live", summary="Server live")
async def live(_: Request) -> Response:
    """The process answers."""
    return json_reply({"live": True})


@router.get("/health/ready", summary="Server ready", responses=docs.v2_errors(503))
async def ready(request: Request) -> Response:
    """Every model loaded, re-proved and warmed up; 503 before that and while draining."""
    service = getattr(request.app.state, "service", None)
    is_ready = service is not None and service.ready
    return json_reply({"ready": is_ready}, 200 if is_ready else 503)


@router.get(
    "/models/{name}",
    summary="Model metadata",
    openapi_extra=docs.path_parameters("name"),
    responses=docs.v2_errors(404, 503),
)
@router.get(
    "/models/{name}/versions/{version}",
    summary="Model metadata (a version)",
    openapi_extra=docs.path_parameters("name", "version"),
    responses=docs.v2_errors(404, 503),
)
async def metadata(request: Request) -> Response:
    """The model's name, versions, platform, inputs and outputs (404 for another version)."""
    return json_reply(model_metadata(_model(request, *_path(request))))


@router.get(
    "/models/{name}/ready",
    summary="Model ready",
    openapi_extra=docs.path_parameters("name"),
    responses=docs.v2_errors(404, 503),
)
@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model ready (a version)",
    openapi_extra=docs.path_parameters("name", "version"),
    responses=docs.v2_errors(404, 503),
)
async def model_ready(request: Request) -> Response:
    """The model (of this version, if one is named) is loaded, re-proved and warm."""
    model = _model(request, *_path(request))
    return json_reply({"name": model.card.name, "ready": True})


def _single_input(inputs: list[InferInput]) -> InferInput:
    if len(inputs) != 1 or inputs[0].name not in ("digits", "number"):
        names = ", ".join(repr(i.name[:20]) for i in inputs) or "none"
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"send exactly one input, 'digits' (INT64 [batch, time]) or 'number' (BYTES "
            f"[batch]); got {names}",
        )
    return inputs[0]


def _digits(tensor: InferInput, service: CounterService) -> np.ndarray:
    if tensor.datatype != "INT64" or len(tensor.shape) != 2 or 0 in tensor.shape:
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"'digits' is INT64 [batch, time] with both at least 1; got {tensor.datatype} "
            f"{tensor.shape}",
        )
    settings = service.settings
    batch, time = tensor.shape
    if batch * time > settings.max_batch_digits or time > settings.max_digits + 1:
        raise ServiceError(
            Kind.BATCH_TOO_LARGE,
            f"'digits' {tensor.shape} is past the limits: batch x time at most "
            f"{settings.max_batch_digits} (COUNTER_MAX_BATCH_DIGITS), time at most "
            f"{settings.max_digits + 1} (COUNTER_MAX_DIGITS + 1)",
        )
    digits = np.asarray(tensor.values, dtype=np.int64).reshape(batch, time)
    if digits.min() < 0 or digits.max() > 9:
        raise ServiceError(Kind.MALFORMED_TENSOR, "'digits' holds values outside 0-9")
    return digits


def _numbers(tensor: InferInput, service: CounterService) -> list[str]:
    settings = service.settings
    if tensor.datatype != "BYTES" or len(tensor.shape) != 1 or tensor.shape[0] == 0:
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"'number' is BYTES [batch] with batch at least 1; got {tensor.datatype} "
            f"{tensor.shape}",
        )
    if tensor.shape[0] > settings.max_batch_items:
        raise ServiceError(
            Kind.TOO_MANY_ITEMS,
            f"'number' has {tensor.shape[0]} items, more than the limit of "
            f"{settings.max_batch_items} (COUNTER_MAX_BATCH_ITEMS)",
        )
    numbers = []
    for index, raw in enumerate(tensor.values):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ServiceError(Kind.INVALID_NUMBER, f"number[{index}] is not UTF-8") from None
        numbers.append(parse_number(text, settings.max_digits, f"number[{index}]"))
    padded = len(numbers) * (max(map(len, numbers)) + 1)
    if padded > settings.max_batch_digits:
        raise ServiceError(
            Kind.BATCH_TOO_LARGE,
            f"{len(numbers)} numbers padded to the longest take {padded} digit steps, past "
            f"the limit of {settings.max_batch_digits} (COUNTER_MAX_BATCH_DIGITS)",
        )
    return numbers


def _bounded_answer(infer: InferRequest, names: list[str], steps: int, limit: int) -> None:
    """Refuse, before the run, a request whose probabilities would pass COUNTER_MAX_ANSWER_BYTES
    as written: about 16 bytes per float as JSON text, 4 as binary data."""
    if "probabilities" not in names:
        return
    binary = infer.binary.get("probabilities", infer.binary_all)
    size = steps * 10 * (4 if binary else 16)
    if size > limit:
        raise ServiceError(
            Kind.BATCH_TOO_LARGE,
            f"the probabilities of {steps} digit steps would take about {size} bytes "
            f"{'as binary data' if binary else 'as JSON'}, more than the limit of {limit} "
            "(COUNTER_MAX_ANSWER_BYTES): ask them as binary data (parameters.binary_data), "
            "leave them out of 'outputs', or send fewer digits",
        )


def _choose(asked: list[str] | None, available: tuple[str, ...], way: str) -> list[str]:
    if asked is None:
        return list(available)
    unknown = [name for name in asked if name not in available]
    if unknown:
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"output {preview(unknown[0], 30)} is not given for the {way} input; available: "
            f"{', '.join(available)}",
        )
    return asked


async def _infer(request: Request, name: str, version: str | None) -> Response:
    require_tensor_media(request)
    service = service_of(request)
    model = _model(request, name, version)
    request.state.model = model.card.name
    header = None
    for key, value in request.scope["headers"]:
        if key == HEADER_LENGTH.encode():
            header = value.decode("latin-1")
    async with service.admitted(declared_length(request)):
        return await _answer(request, service, model, header)


async def _answer(
    request: Request, service: CounterService, model: LoadedModel, header: str | None
) -> Response:
    infer = parse_request(await read_body(request), header)
    tensor = _single_input(infer.inputs)
    outputs: list[OutputTensor] = []
    async with ClientGone(request) as gone:
        if tensor.name == "digits":
            digits = _digits(tensor, service)
            request.state.digits = int(digits.size)
            names = _choose(infer.outputs, RAW_OUTPUTS, "'digits'")
            _bounded_answer(infer, names, int(digits.size), service.settings.max_answer_bytes)
            probs = await service.probabilities(model.card.name, digits, gone)
            outputs = [OutputTensor("probabilities", "FP32", list(probs.shape), probs)]
        else:
            numbers = _numbers(tensor, service)
            request.state.digits = sum(map(len, numbers))
            names = _choose(infer.outputs, NUMBER_OUTPUTS, "'number'")
            steps = len(numbers) * (max(map(len, numbers)) + 1)
            _bounded_answer(infer, names, steps, service.settings.max_answer_bytes)
            answers, probs = await service.numbers(model.card.name, numbers, gone)
            columns: dict[str, OutputTensor] = {
                "output": OutputTensor(
                    "output", "BYTES", [len(answers)], [a["output"] for a in answers]
                ),
                "probabilities": OutputTensor("probabilities", "FP32", list(probs.shape), probs),
                "carry_run": OutputTensor(
                    "carry_run",
                    "INT64",
                    [len(answers)],
                    np.array([a["carry_run"] for a in answers]),
                ),
                "beyond_reliable_carry": OutputTensor(
                    "beyond_reliable_carry",
                    "BOOL",
                    [len(answers)],
                    np.array([a["flags"]["beyond_reliable_carry"] for a in answers]),
                ),
                "proved": OutputTensor(
                    "proved", "BOOL", [len(answers)], np.array([a["proved"] for a in answers])
                ),
                "correct": OutputTensor(
                    "correct",
                    "BOOL",
                    [len(answers)],
                    np.array([a["check"]["correct"] for a in answers]),
                ),
            }
            outputs = [columns[n] for n in names]
    body, headers = write_response(model.card.name, model.card.version, infer, outputs)
    return reply(body, headers=headers, media_type=None)


_INFER_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/InferenceRequest"},
                "examples": {
                    "raw digits of 1299 (least significant first, extra zero step)": {
                        "value": {
                            "inputs": [
                                {
                                    "name": "digits",
                                    "shape": [1, 5],
                                    "datatype": "INT64",
                                    "data": [9, 9, 2, 1, 0],
                                }
                            ]
                        }
                    },
                    "numbers, with the counter's outputs": {
                        "value": {
                            "inputs": [
                                {
                                    "name": "number",
                                    "shape": [2],
                                    "datatype": "BYTES",
                                    "data": ["1299", "99999999"],
                                }
                            ],
                            "outputs": [{"name": "output"}, {"name": "proved"}],
                        }
                    },
                },
            }
        },
    }
}


@router.post(
    "/models/{name}/infer",
    summary="Inference",
    openapi_extra={**_INFER_DOC, **docs.path_parameters("name")},
    responses=docs.v2_errors(400, 404, 413, 415, 422, 503),
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference (a version)",
    openapi_extra={**_INFER_DOC, **docs.path_parameters("name", "version")},
    responses=docs.v2_errors(400, 404, 413, 415, 422, 503),
)
async def infer(request: Request) -> Response:
    """Run the model (of this version, if one is named) on `digits` (the raw ONNX contract) or
    `number` (the counter's answers); JSON or binary tensors (Inference-Header-Content-Length)."""
    return await _infer(request, *_path(request))
