"""The ModelInferResponse written on the wire by hand is the message protobuf would build."""

import numpy as np
import pytest

from app.api.tensors import OutputTensor, tensor_bytes
from app.grpc.tensors import write_response
from app.grpc.v2 import grpc_predict_v2_pb2 as pb


def by_protobuf(
    model: str, version: str, request_id: str | None, outputs: list[OutputTensor]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id or "")
    for tensor in outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(tensor_bytes(tensor))
    return response


@pytest.mark.parametrize("request_id", [None, "", "a-request", "é" * 100])
@pytest.mark.parametrize("rows", [1, 3, 200])
def test_the_response_is_the_message_protobuf_builds(request_id: str | None, rows: int) -> None:
    rng = np.random.default_rng(rows)
    probabilities = rng.random((rows, 12, 10), dtype=np.float32)
    outputs = [
        OutputTensor("output", "BYTES", [rows], [str(n) * (n % 7 + 1) for n in range(rows)]),
        OutputTensor("probabilities", "FP32", list(probabilities.shape), probabilities),
        # plain lists, as the counter's answers give them: Python and numpy scalars, negatives
        OutputTensor("carry_run", "INT64", [rows], [np.int64(n) - 1 for n in range(rows)]),
        OutputTensor("proved", "BOOL", [rows], [n % 2 == 0 for n in range(rows)]),
        OutputTensor("correct", "BOOL", [rows], [np.bool_(n % 3) for n in range(rows)]),
    ]
    written = write_response("counter-post", "2", request_id, outputs)
    assert pb.ModelInferResponse.FromString(written) == by_protobuf(
        "counter-post", "2", request_id, outputs
    )
    digits = OutputTensor("probabilities", "FP32", [rows, 3, 10], probabilities[:, :3])
    written = write_response("counter", "1", request_id, [digits])
    assert pb.ModelInferResponse.FromString(written) == by_protobuf(
        "counter", "1", request_id, [digits]
    )
