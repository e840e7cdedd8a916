"""The V2 gRPC clients users run, each driven in a process of its own (run_client) by the gRPC
tests: `python -m tests.app.grpc_clients CLIENT ADDRESS` reads a JSON job on stdin and prints
what the client got as JSON. One process per client because tritonclient's and KServe's
generated modules register the same protobuf names (inference.*), which one process cannot hold
twice.

A job: {"model": name, "input": "number" | "digits", "data": [...], "shape": [...],
"outputs": [names] or null, "id": str, "binary": bool (raw_input_contents or typed contents)}.
The answer: {"live", "ready", "model_ready", "metadata": {...}, "outputs": {name: list},
"shapes": {name: shape}, "datatypes": {name: str}, "id"}, or {"error": {"code", "message"}}.
triton-repeat calls ModelInfer for job["seconds"] and answers {"answers": {"sync", "aio"},
"errors": [...]}; triton-repository runs job["actions"] (see there).
"""

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from core.codec import add_one

PAUSE_S = 0.01  # between triton_repeat's calls: a steady client, not a busy loop


def _values(array: Any) -> list[Any]:
    flat = np.asarray(array).ravel().tolist()
    return [v.decode() if isinstance(v, bytes) else v for v in flat]


def _array(job: dict[str, Any]) -> Any:
    if job["input"] == "number":
        return np.array([n.encode() for n in job["data"]], dtype=object)
    return np.asarray(job["data"], dtype=np.int64).reshape(job["shape"])


def _metadata(described: dict[str, Any]) -> dict[str, Any]:
    """protobuf's JSON writes int64 as strings: shapes back to numbers, to compare with REST."""
    for tensor in described.get("inputs", []) + described.get("outputs", []):
        tensor["shape"] = [int(d) for d in tensor["shape"]]
    return described


def _triton_inputs(module: Any, job: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    array = _array(job)
    datatype = "BYTES" if job["input"] == "number" else "INT64"
    tensor = module.InferInput(job["input"], list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    if not job.get("binary", True):  # typed contents instead of raw_input_contents
        tensor._raw_content = None
        tensor._input.ClearField("contents")
        if datatype == "BYTES":
            tensor._input.contents.bytes_contents.extend(array.tolist())
        else:
            tensor._input.contents.int64_contents.extend(array.ravel().tolist())
    names = job.get("outputs")
    outputs = [module.InferRequestedOutput(n) for n in names] if names else None
    return [tensor], outputs


def _triton_result(result: Any, names: list[str]) -> dict[str, Any]:
    response = result.get_response()
    return {
        "id": response.id,
        "outputs": {n: _values(result.as_numpy(n)) for n in names},
        "shapes": {o.name: list(o.shape) for o in response.outputs},
        "datatypes": {o.name: o.datatype for o in response.outputs},
        "model_version": response.model_version,
    }


def _output_names(job: dict[str, Any]) -> list[str]:
    if job.get("outputs"):
        return list(job["outputs"])
    if job["input"] == "digits":
        return ["probabilities"]
    return ["output", "probabilities", "carry_run", "beyond_reliable_carry", "proved", "correct"]


def triton_sync(address: str, job: dict[str, Any]) -> dict[str, Any]:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    metadata = _metadata(client.get_model_metadata(job["model"], as_json=True))
    inputs, outputs = _triton_inputs(triton, job)
    result = client.infer(
        job["model"], inputs, outputs=outputs, request_id=job.get("id", ""), client_timeout=30
    )
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(job["model"]),
        "server": client.get_server_metadata(as_json=True),
        "metadata": metadata,
        "config": client.get_model_config(job["model"], as_json=True)["config"],
        **_triton_result(result, _output_names(job)),
    }


async def triton_aio(address: str, job: dict[str, Any]) -> dict[str, Any]:
    import tritonclient.grpc.aio as triton

    client = triton.InferenceServerClient(address)
    try:
        inputs, outputs = _triton_inputs(triton, job)
        result = await client.infer(
            job["model"], inputs, outputs=outputs, request_id=job.get("id", ""), client_timeout=30
        )
        return {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(job["model"]),
            "metadata": _metadata(await client.get_model_metadata(job["model"], as_json=True)),
            **_triton_result(result, _output_names(job)),
        }
    finally:
        await client.close()


async def kserve_grpc(address: str, job: dict[str, Any]) -> dict[str, Any]:
    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

    client = InferenceGRPCClient(address, timeout=30, retries=0)
    try:
        array = _array(job)
        datatype = "BYTES" if job["input"] == "number" else "INT64"
        tensor = InferInput(job["input"], list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=job.get("binary", True))
        names = job.get("outputs")
        request = InferRequest(
            job["model"],
            [tensor],
            request_id=job.get("id"),
            request_outputs=[RequestedOutput(n) for n in names] if names else None,
        )
        result = await client.infer(request)
        return {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(job["model"]),
            "id": result.id,
            "outputs": {o.name: _values(o.as_numpy()) for o in result.outputs},
            "shapes": {o.name: list(o.shape) for o in result.outputs},
            "datatypes": {o.name: o.datatype for o in result.outputs},
            "model_version": result.model_version,
        }
    finally:
        await client.close()


def triton_repository(address: str, job: dict[str, Any]) -> dict[str, Any]:
    """The repository calls: unload and load `model` with each of job["tokens"] (None: no
    header), and the index after each; what each call gave (OK or the status code)."""
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(address)
    steps = []
    for action in job["actions"]:
        token = action.get("token")
        headers = {"authorization": f"Bearer {token}"} if token else None
        try:
            if action["call"] == "load":
                client.load_model(job["model"], headers=headers)
            else:
                client.unload_model(job["model"], headers=headers)
            outcome = "OK"
        except InferenceServerException as exc:
            outcome = f"{exc.status()}: {exc.message()}"
        index = client.get_model_repository_index(as_json=True)["models"]
        steps.append({"outcome": outcome, "index": {m["name"]: m["state"] for m in index}})
    return {"steps": steps}


def triton_repeat(address: str, job: dict[str, Any]) -> dict[str, Any]:
    """One client of each kind (sync, then asyncio) calling ModelInfer on one channel for
    job["seconds"] each: how many answers were right, and every error, as "kind: message"."""
    import tritonclient.grpc as triton
    import tritonclient.grpc.aio as triton_aio

    answers = {"sync": 0, "aio": 0}
    errors: list[str] = []

    def check(kind: str, result: Any) -> None:
        got = _values(result.as_numpy("output"))
        if got == [add_one(n) for n in job["data"]]:
            answers[kind] += 1
        else:
            errors.append(f"{kind}: wrong answer {got}")

    client = triton.InferenceServerClient(address)
    until = time.monotonic() + job["seconds"]
    while time.monotonic() < until:
        try:
            check("sync", client.infer(job["model"], _triton_inputs(triton, job)[0]))
        except Exception as exc:  # the test lists what the client saw
            errors.append(f"sync: {exc}")
        time.sleep(PAUSE_S)

    async def run() -> None:
        aio = triton_aio.InferenceServerClient(address)
        until = time.monotonic() + job["seconds"]
        try:
            while time.monotonic() < until:
                try:
                    check("aio", await aio.infer(job["model"], _triton_inputs(triton_aio, job)[0]))
                except Exception as exc:  # the test lists what the client saw
                    errors.append(f"aio: {exc}")
                await asyncio.sleep(PAUSE_S)
        finally:
            await aio.close()

    asyncio.run(run())
    return {"answers": answers, "errors": errors}


def run_client(client: str, address: str, job: dict[str, Any]) -> dict[str, Any]:
    """What `client` got for `job` (see above), in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.app.grpc_clients", client, address],
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def main() -> None:
    client, address = sys.argv[1], sys.argv[2]
    job = json.loads(sys.stdin.read())
    try:
        if client == "triton":
            answer = triton_sync(address, job)
        elif client == "triton-repeat":
            answer = triton_repeat(address, job)
        elif client == "triton-repository":
            answer = triton_repository(address, job)
        elif client == "triton-aio":
            answer = asyncio.run(triton_aio(address, job))
        else:
            answer = asyncio.run(kserve_grpc(address, job))
    except Exception as exc:  # the test compares what the client reports
        code = getattr(exc, "status", None) or getattr(exc, "code", None)
        code = code() if callable(code) else code
        answer = {"error": {"code": str(code), "message": str(exc)}}
    print(json.dumps(answer, default=str))


if __name__ == "__main__":
    main()
