"""The Open Inference Protocol (KServe V2) over the same CounterService as the counter's JSON.

Two ways into a model:
- raw: `digits` INT64 [batch, time] -> `probabilities` FP32 [batch, time, 10], exactly the ONNX
  contract (digits least significant first, zero padded, with the extra zero step);
- the counter's own: `number` BYTES [batch] (decimal strings, the input rules of /increment) ->
  `output` BYTES, `probabilities` FP32 [batch, longest + 1, 10], `carry_run` INT64,
  `beyond_reliable_carry` BOOL, `proved` BOOL, `correct` BOOL.
Errors are {"error": "<message>"} (app.http.edge writes that shape under /v2) with the same
limits and statuses as the counter's JSON. tritonclient and the kserve package's client both
speak this.
The inference itself (checks, runs, outputs) is app.api.inference's, shared with app.grpc.
"""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import tracing, workers
from app.api import openapi
from app.api.infer_request import parse_request
from app.api.inference import Inference, find_model
from app.api.model_metadata import model_config, model_metadata
from app.api.tensors import HEADER_LENGTH, SERVER, InferRequest, OutputTensor, write_response
from app.errors import Kind, ServiceError
from app.http.exchange import (
    ClientGone,
    declared_length,
    json_reply,
    read_body,
    reply,
    require_tensor_media,
    service_of,
)
from app.http.headers import header, state_of
from app.http.lean import LeanRoute
from app.runtime.models import LoadedModel
from app.runtime.service import CounterService

router = APIRouter(
    prefix="/v2", tags=["Open Inference Protocol (KServe V2)"], route_class=LeanRoute
)


def _path(request: Request) -> tuple[str, str | None]:
    """The model name and version (None: any) in the path."""
    params = request.path_params
    return params["name"], params.get("version")


def _model(request: Request, name: str, version: str | None = None) -> LoadedModel:
    return find_model(service_of(request), name, version)


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


@router.get("/health/ready", summary="Server ready", responses=openapi.v2_errors(503))
async def ready(request: Request) -> Response:
    """Every model loaded, re-proved and warmed up (in every worker); 503 before that and while
    draining."""
    service = getattr(request.app.state, "service", None)
    is_ready = service is not None and service.ready and workers.siblings_ready()
    return json_reply({"ready": is_ready}, 200 if is_ready else 503)


@router.get(
    "/models/{name}",
    summary="Model metadata",
    openapi_extra=openapi.path_parameters("name"),
    responses=openapi.v2_errors(404, 503),
)
@router.get(
    "/models/{name}/versions/{version}",
    summary="Model metadata (a version)",
    openapi_extra=openapi.path_parameters("name", "version"),
    responses=openapi.v2_errors(404, 503),
)
async def metadata(request: Request) -> Response:
    """The model's name, the versions served (the latest first), platform, inputs and
    outputs; 404 for a version not served."""
    model = _model(request, *_path(request))
    return json_reply(model_metadata(model, service_of(request).versions(model.card.name)))


@router.get(
    "/models/{name}/config",
    summary="Model configuration (Triton's, minimal)",
    openapi_extra=openapi.path_parameters("name"),
    responses=openapi.v2_errors(404, 503),
)
async def config(request: Request) -> Response:
    """Triton's model configuration, minimal: what Triton's perf_analyzer asks first (the
    `number` input, the outputs, their types and dims)."""
    return json_reply(model_config(_model(request, *_path(request))))


@router.get(
    "/models/{name}/ready",
    summary="Model ready",
    openapi_extra=openapi.path_parameters("name"),
    responses=openapi.v2_errors(404, 503),
)
@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model ready (a version)",
    openapi_extra=openapi.path_parameters("name", "version"),
    responses=openapi.v2_errors(404, 503),
)
async def model_ready(request: Request) -> Response:
    """The model (of this version, if one is named) is loaded, re-proved and warm."""
    model = _model(request, *_path(request))
    return json_reply({"name": model.card.name, "ready": True})


async def _infer(request: Request, name: str, version: str | None) -> Response:
    require_tensor_media(request)
    service = service_of(request)
    model = _model(request, name, version)
    state_of(request).model = model.card.name
    raw = header(request.scope["headers"], HEADER_LENGTH.encode())
    header_length = None if raw is None else raw.decode("latin-1")
    async with service.admitted(declared_length(request)):
        return await _answer(request, service, model, version, header_length)


async def _answer(
    request: Request,
    service: CounterService,
    model: LoadedModel,
    version: str | None,
    header_length: str | None,
) -> Response:
    body = await read_body(request)
    if tracing.TRACER is None:  # off: the plain calls, not even a do-nothing `with`
        infer = parse_request(body, header_length)
        inference = Inference(service, infer)
    else:
        with tracing.span("parse"):
            infer = parse_request(body, header_length)
            inference = Inference(service, infer)
    state_of(request).digits = inference.size
    _bounded_answer(infer, inference, service.settings.max_answer_bytes)
    async with ClientGone(request) as gone:
        outputs = await inference.run(service, model, gone, version)
    if tracing.TRACER is None:
        return _written(model, infer, outputs)
    with tracing.span("answer"):
        return _written(model, infer, outputs)


def _written(model: LoadedModel, infer: InferRequest, outputs: list[OutputTensor]) -> Response:
    parts, headers = write_response(model.card.name, model.card.version, infer, outputs)
    return reply(parts, headers=headers, media_type=None)


def _bounded_answer(infer: InferRequest, inference: Inference, limit: int) -> None:
    """Refuse, before the run, a request whose probabilities would pass COUNTER_MAX_ANSWER_BYTES
    as written: about 16 bytes per float as JSON text, 4 as binary data."""
    if "probabilities" not in inference.names:
        return
    if inference.digits is not None:
        steps = int(inference.digits.size)
    else:
        steps = len(inference.numbers) * (max(map(len, inference.numbers)) + 1)
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
    openapi_extra={**_INFER_DOC, **openapi.path_parameters("name")},
    responses=openapi.v2_errors(400, 404, 413, 415, 422, 503),
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference (a version)",
    openapi_extra={**_INFER_DOC, **openapi.path_parameters("name", "version")},
    responses=openapi.v2_errors(400, 404, 413, 415, 422, 503),
)
async def infer(request: Request) -> Response:
    """Run the model (of this version, if one is named) on `digits` (the raw ONNX contract) or
    `number` (the counter's answers); JSON or binary tensors (Inference-Header-Content-Length)."""
    return await _infer(request, *_path(request))
