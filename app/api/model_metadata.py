"""A model's V2 metadata (GET /v2/models/{name}, gRPC ModelMetadata) with what the service
proved of it at load, and the minimal Triton model configuration tools read before inferring."""

from typing import Any

from app.runtime.models import LoadedModel

PLATFORM = "onnxruntime_onnx"


# Triton's model configuration names for the datatypes above (BYTES is TYPE_STRING there).
TRITON_TYPES = {
    "BYTES": "TYPE_STRING",
    "INT64": "TYPE_INT64",
    "FP32": "TYPE_FP32",
    "BOOL": "TYPE_BOOL",
}


def model_config(model: LoadedModel) -> dict[str, Any]:
    """A minimal Triton model configuration (GET /v2/models/{name}/config, gRPC ModelConfig),
    as Triton's perf_analyzer reads it before any inference: both inputs, each optional (a
    request sends exactly one), so that perf_analyzer sends the one it is given data for."""
    described = model_metadata(model)

    def entry(tensor: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": tensor["name"],
            "data_type": TRITON_TYPES[tensor["datatype"]],
            "dims": tensor["shape"],
        }

    return {
        "name": model.card.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "input": [{**entry(t), "optional": True} for t in described["inputs"]],
        "output": [entry(t) for t in described["outputs"]],
    }


def _metadata_tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def model_metadata(model: LoadedModel, versions: list[str] | None = None) -> dict[str, Any]:
    """Inputs (either one per request) and outputs of a model, -1 for a dynamic dimension;
    versions: those served (default: the model's own)."""
    return {
        "name": model.card.name,
        "versions": versions or [model.card.version],
        "platform": PLATFORM,
        "inputs": [
            _metadata_tensor("digits", "INT64", [-1, -1]),
            _metadata_tensor("number", "BYTES", [-1]),
        ],
        "outputs": [
            _metadata_tensor("probabilities", "FP32", [-1, -1, 10]),
            _metadata_tensor("output", "BYTES", [-1]),
            _metadata_tensor("carry_run", "INT64", [-1]),
            _metadata_tensor("beyond_reliable_carry", "BOOL", [-1]),
            _metadata_tensor("proved", "BOOL", [-1]),
            _metadata_tensor("correct", "BOOL", [-1]),
        ],
        "parameters": _proof_parameters(model),
    }


def _proof_parameters(model: LoadedModel) -> dict[str, Any]:
    """What the service proved of the model at load (the v2 protocol's free-form parameters):
    the reliable carry length it serves and, when the card has one, the decision's check."""
    check = model.check
    found: dict[str, Any] = {"reliable_carry_length": model.card.metrics.reliable_carry_length}
    if check.decision is not None:
        found["decision_check"] = check.decision.result
        found["decision_check_seconds"] = check.decision.seconds
        found["decided_carry_length"] = check.decision.proved_carry_length
        found["refutation"] = check.decision.refutation
        if check.decision.reason is not None:
            found["decision_check_reason"] = check.decision.reason
    return found
