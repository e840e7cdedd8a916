"""One Open Inference Protocol (KServe V2) inference, whatever carried it (REST or gRPC).

A parsed request (app.api.tensors.InferRequest) goes in, output tensors come out; each protocol
reads its own wire format into the request and writes the outputs back in it. Two ways into a
model:
- raw: `digits` INT64 [batch, time] -> `probabilities` FP32 [batch, time, 10], exactly the ONNX
  contract (digits least significant first, zero padded, with the extra zero step);
- the counter's own: `number` BYTES [batch] (decimal strings, the input rules of /increment) ->
  `output` BYTES, `probabilities` FP32 [batch, longest + 1, 10], `carry_run` INT64,
  `beyond_reliable_carry` BOOL, `proved` BOOL, `correct` BOOL.
Every malformed request is a ServiceError saying what was wrong and what is accepted.
"""

import asyncio

import numpy as np
import numpy.typing as npt

from app.api.numbers import parse_number
from app.api.tensors import InferInput, InferRequest, OutputTensor
from app.errors import Kind, ServiceError, preview
from app.runtime.answers import Answer
from app.runtime.models import LoadedModel
from app.runtime.service import CounterService

RAW_OUTPUTS = ("probabilities",)
NUMBER_OUTPUTS = (
    "output",
    "probabilities",
    "carry_run",
    "beyond_reliable_carry",
    "proved",
    "correct",
)


def find_model(service: CounterService, name: str, version: str | None = None) -> LoadedModel:
    """The named model (of this version, if one is named: the latest, or one a reload
    replaced and COUNTER_MAX_MODEL_VERSIONS keeps); 404 / NOT_FOUND otherwise."""
    return service.model(name, version)


def single_input(inputs: list[InferInput]) -> InferInput:
    if len(inputs) != 1 or inputs[0].name not in ("digits", "number"):
        names = ", ".join(preview(i.name, 20) for i in inputs) or "none"
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"send exactly one input, 'digits' (INT64 [batch, time]) or 'number' (BYTES "
            f"[batch]); got {names}",
        )
    return inputs[0]


def digits_of(tensor: InferInput, service: CounterService) -> npt.NDArray[np.int64]:
    if tensor.datatype != "INT64" or len(tensor.shape) != 2 or 0 in tensor.shape:
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"'digits' is INT64 [batch, time] with both at least 1; got "
            f"{preview(tensor.datatype, 12)} {tensor.shape}",
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


def numbers_of(tensor: InferInput, service: CounterService) -> list[str]:
    settings = service.settings
    if tensor.datatype != "BYTES" or len(tensor.shape) != 1 or tensor.shape[0] == 0:
        raise ServiceError(
            Kind.MALFORMED_TENSOR,
            f"'number' is BYTES [batch] with batch at least 1; got "
            f"{preview(tensor.datatype, 12)} {tensor.shape}",
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


def choose(asked: list[str] | None, available: tuple[str, ...], way: str) -> list[str]:
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


class Inference:
    """A checked request, ready to run: which input, its values, the outputs asked, and the
    digits it asks about (for the access log)."""

    __slots__ = ("digits", "names", "numbers", "size")

    def __init__(self, service: CounterService, request: InferRequest) -> None:
        tensor = single_input(request.inputs)
        self.digits: npt.NDArray[np.int64] | None = None
        self.numbers: list[str] = []
        if tensor.name == "digits":
            self.digits = digits_of(tensor, service)
            self.size = int(self.digits.size)
            self.names = choose(request.outputs, RAW_OUTPUTS, "'digits'")
        else:
            self.numbers = numbers_of(tensor, service)
            self.size = sum(map(len, self.numbers))
            self.names = choose(request.outputs, NUMBER_OUTPUTS, "'number'")

    async def run(
        self,
        service: CounterService,
        model: LoadedModel,
        stop: asyncio.Event | None,
        version: str | None = None,
        gather: float = 0.0,
    ) -> list[OutputTensor]:
        """The outputs asked for, in the order asked; by the latest version of the model, or
        by the version named (a request that named none and found a version being replaced
        is answered by the latest when it runs). gather: app.runtime.batcher's."""
        name = model.card.name
        if self.digits is not None:
            probs = await service.probabilities(name, self.digits, stop, version, gather)
            return [OutputTensor("probabilities", "FP32", list(probs.shape), probs)]
        answers, probs = await service.numbers(name, self.numbers, stop, version, gather)
        return self.number_outputs(answers, probs)

    def number_outputs(
        self, answers: list[Answer], probs: npt.NDArray[np.float32]
    ) -> list[OutputTensor]:
        """The `number` input's outputs asked for, in the order asked, from its run."""
        count = [len(answers)]
        columns: dict[str, OutputTensor] = {
            "output": OutputTensor("output", "BYTES", count, [a["output"] for a in answers]),
            "probabilities": OutputTensor("probabilities", "FP32", list(probs.shape), probs),
            # Plain lists, not arrays: orjson and app.api.tensors.tensor_bytes write both alike, and
            # a list of one is made for less.
            "carry_run": OutputTensor(
                "carry_run", "INT64", count, [a["carry_run"] for a in answers]
            ),
            "beyond_reliable_carry": OutputTensor(
                "beyond_reliable_carry",
                "BOOL",
                count,
                [a["flags"]["beyond_reliable_carry"] for a in answers],
            ),
            "proved": OutputTensor("proved", "BOOL", count, [a["proved"] for a in answers]),
            "correct": OutputTensor(
                "correct", "BOOL", count, [a["check"]["correct"] for a in answers]
            ),
        }
        return [columns[n] for n in self.names]
