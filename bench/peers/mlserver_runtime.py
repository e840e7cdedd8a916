"""MLServer custom runtime for bench/peers.py: models/counter.onnx in onnxruntime.

The V2 `digits` contract, as this project serves it raw: input `digits` INT64 [batch, time] ->
output `probabilities` FP32 [batch, time, 10]. The onnxruntime session is core.session's, the
one the service itself answers through (1 intra-op thread, sequential, no arena), so the three
servers differ only in what surrounds the model run.

Runs inside MLServer's own virtualenv (.bench/mlserver, `make peers-env`), started by
`mlserver start <folder>` with this folder and the repository root on PYTHONPATH and a
model-settings.json naming `mlserver_runtime.CounterRuntime` (bench/peers.py writes it).
"""

from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from core.session import open_session


class CounterRuntime(MLModel):  # type: ignore[misc]  # MLServer ships no types for mypy here
    """One onnxruntime session; predict() runs it on the `digits` tensor."""

    async def load(self) -> bool:
        self._session: Any = open_session(await get_model_uri(self.settings))
        return True

    @custom_handler(rest_path="/v2/models/counter/config", rest_method="GET")  # type: ignore[untyped-decorator]
    async def config(self) -> dict[str, Any]:
        """Triton's model configuration, minimal, which perf_analyzer reads before any
        inference (MLServer has none of its own; bench/peers/mlserver_start.py answers the
        same over gRPC)."""
        return {
            "name": "counter",
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": 0,
            "input": [{"name": "digits", "data_type": "TYPE_INT64", "dims": [-1, -1]}],
            "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, -1, 10]}],
        }

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tensors = [tensor for tensor in payload.inputs if tensor.name == "digits"]
        if len(payload.inputs) != 1 or not tensors:
            raise MLServerError("send exactly one input, 'digits' (INT64 [batch, time])", 400)
        digits = NumpyCodec.decode_input(tensors[0]).astype(np.int64, copy=False)
        (probabilities,) = self._session.run(["probabilities"], {"digits": digits})
        output = NumpyCodec.encode_output("probabilities", probabilities)
        # The codec's parameters ({"content_type": "np"}) stop perf_analyzer, which reads any
        # output's parameters as the binary extension's; the tensor is the same without them.
        output.parameters = None
        return InferenceResponse(
            id=payload.id, model_name=self.name, model_version=self.version, outputs=[output]
        )
