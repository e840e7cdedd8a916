"""The ModelInferResponse written on the wire by hand is the message protobuf would build.

The comparison runs in a process of its own: importing the generated protobuf modules here
would register the protocol's names in this process, where tritonclient's clients (other
tests) register the same ones.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def compare() -> None:
    """Each response as written against protobuf's own, for several shapes, ids and values."""
    import numpy as np

    from app.api.tensors import OutputTensor, tensor_bytes
    from app.grpc.tensors import write_response
    from app.grpc.v2 import grpc_predict_v2_pb2 as pb

    def by_protobuf(
        model: str, version: str, request_id: str | None, outputs: list[OutputTensor]
    ) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse(
            model_name=model, model_version=version, id=request_id or ""
        )
        for tensor in outputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(tensor_bytes(tensor))
        return response

    for request_id in (None, "", "a-request", "é" * 100):
        for rows in (1, 3, 200):
            rng = np.random.default_rng(rows)
            probabilities = rng.random((rows, 12, 10), dtype=np.float32)
            numbers = range(rows)
            outputs = [
                OutputTensor("output", "BYTES", [rows], [str(n) * (n % 7 + 1) for n in numbers]),
                OutputTensor("probabilities", "FP32", list(probabilities.shape), probabilities),
                # plain lists, as the counter's answers give them: Python and numpy scalars
                OutputTensor("carry_run", "INT64", [rows], [np.int64(n) - 1 for n in numbers]),
                OutputTensor("proved", "BOOL", [rows], [n % 2 == 0 for n in numbers]),
                OutputTensor("correct", "BOOL", [rows], [np.bool_(n % 3) for n in numbers]),
            ]
            digits = OutputTensor("probabilities", "FP32", [rows, 3, 10], probabilities[:, :3])
            for model, tensors in (("counter-post", outputs), ("counter", [digits])):
                written = pb.ModelInferResponse.FromString(
                    write_response(model, "2", request_id, tensors)
                )
                wanted = by_protobuf(model, "2", request_id, tensors)
                assert written == wanted, (request_id, rows, model)


def test_the_response_is_the_message_protobuf_builds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from tests.app.test_grpc_tensors import compare; compare()"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
