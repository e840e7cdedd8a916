"""KServe model server for bench/peers.py: models/counter.onnx in onnxruntime.

A `kserve.Model` subclass served by `kserve.ModelServer` (V2 REST, one worker process), with
the V2 `digits` contract as this project serves it raw: input `digits` INT64 [batch, time] ->
output `probabilities` FP32 [batch, time, 10]. The onnxruntime session is core.session's, the
one the service itself answers through (1 intra-op thread, sequential, no arena).

Runs inside KServe's own virtualenv (.bench/kserve, `make peers-env`), with the repository root
on PYTHONPATH:

    python bench/peers/kserve_server.py --model_path models/counter.onnx --http_port 8080 \
        --workers 1 --enable_grpc false

Every other option is KServe's own (kserve.model_server's parser reads sys.argv too).
"""

import argparse
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

from core.session import open_session


class CounterModel(kserve.Model):  # type: ignore[misc]  # kserve ships no types for mypy
    """One onnxruntime session; predict() runs it on the `digits` tensor."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: Any = None

    def load(self) -> bool:
        self.session = open_session(self.path)
        self.ready = True
        return True

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        tensors = [tensor for tensor in payload.inputs if tensor.name == "digits"]
        if len(payload.inputs) != 1 or not tensors:
            raise InvalidInput("send exactly one input, 'digits' (INT64 [batch, time])")
        digits = tensors[0].as_numpy().astype(np.int64, copy=False)
        (probabilities,) = self.session.run(["probabilities"], {"digits": digits})
        output = InferOutput("probabilities", list(probabilities.shape), "FP32")
        output.set_data_from_numpy(probabilities, binary_data=False)
        # KServe's V2 response needs an id; it makes one when the request has none (as MLServer)
        return InferResponse(
            response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=[output]
        )


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True, help="the .onnx file to serve")
    args, _ = parser.parse_known_args()
    model = CounterModel(args.model_name, args.model_path)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
