"""An ONNX graph as lines, for the graph check (core.canonical): a header, inputs, outputs,
initializers (shape only), then one line per node with every value renamed by position, so that
two exports of one architecture render the same and a difference names its line.
"""

from typing import Any

from core.onnx_reader import DTYPES, OnnxFormatError, Tensor
from core.onnx_strict import Message, NotCanonicalError

_ELEMENT = {1: "float32", 7: "int64"}


def _tensor_values(tensor: Message) -> list[Any]:
    """A Constant's values, as a flat list (its element type is checked by the rendering)."""
    found = Tensor(
        name=tensor.get("name", ""),
        dims=tensor.get("dims", []),
        data_type=tensor.get("data_type", 0),
        raw=tensor.get("raw_data", b""),
        floats=tensor.get("float_data", []),
        ints=tensor.get("int64_data", []) + tensor.get("int32_data", []),
    )
    if found.data_type not in DTYPES:
        raise NotCanonicalError(f"tensor {found.name!r} has element type {found.data_type}")
    try:
        values: list[Any] = found.array().ravel().tolist()
    except (OnnxFormatError, ValueError) as exc:
        raise NotCanonicalError(str(exc)) from None
    return values


def _tensor_type(tensor: Message) -> str:
    """Element type and dims; the exporter keeps every tensor's values in raw_data alone, so a
    tensor holding them elsewhere (which one wins is the reader's choice) renders otherwise."""
    element = tensor.get("data_type", 0)
    shown = f"{_ELEMENT.get(element, f'type{element}')}{tensor.get('dims', [])}"
    elsewhere = sorted(set(tensor) - {"name", "dims", "data_type", "raw_data"})
    if elsewhere or "raw_data" not in tensor:
        shown += f"<values in {', '.join(elsewhere) or 'no field'}>"
    return shown


def _attribute(attribute: Message) -> str:
    name, kind = attribute.get("name", ""), attribute.get("type", 0)
    shown: Any
    if kind == 1:
        shown = attribute.get("f", 0.0)
    elif kind == 2:
        shown = attribute.get("i", 0)
    elif kind == 3:
        shown = attribute.get("s", b"").decode("utf-8", "replace")
    elif kind == 4:
        tensor = attribute.get("t", {})
        values = _tensor_values(tensor)
        shown = f"{_tensor_type(tensor)}{values if len(values) <= 16 else '...'}"
    elif kind == 6:
        shown = attribute.get("floats", [])
    elif kind == 7:
        shown = attribute.get("ints", [])
    elif kind == 8:
        shown = [s.decode("utf-8", "replace") for s in attribute.get("strings", [])]
    else:
        shown = f"<type {kind}>"
    # a field of another type set beside the one the type names is refused, not ignored
    used = {1: "f", 2: "i", 3: "s", 4: "t", 6: "floats", 7: "ints", 8: "strings"}.get(kind)
    extra = sorted(set(attribute) - {"name", "type", used})
    if extra:
        return f"{name}=<{shown} with {', '.join(extra)}>"
    return f"{name}={shown}"


def _value_info(value: Message) -> str:
    tensor = value.get("type", {}).get("tensor_type", {})
    dims = [
        str(d["dim_value"]) if "dim_value" in d else d.get("dim_param", "?")
        for d in tensor.get("shape", {}).get("dim", [])
    ]
    element = tensor.get("elem_type", 0)
    return f"{value.get('name', '')}: {_ELEMENT.get(element, f'type{element}')}[{','.join(dims)}]"


def render(model: Message) -> list[str]:
    """The model as lines: header, inputs, outputs, initializers (shape only), then one line
    per node with every value renamed by where it comes from (%k: the k-th node output, wK:
    the K-th initializer), so that two exports of one architecture render the same."""
    graph: Message = model.get("graph", {})
    opsets = [
        f"{o.get('domain', '') or 'ai.onnx'} {o.get('version', 0)}"
        for o in model.get("opset_import", [])
    ]
    lines = [f"ir_version {model.get('ir_version', 0)}", f"opset_import {', '.join(opsets)}"]
    inputs = [v.get("name", "") for v in graph.get("input", [])]
    names: dict[str, str] = {name: name for name in inputs}
    lines += [f"input {_value_info(v)}" for v in graph.get("input", [])]
    lines += [f"output {_value_info(v)}" for v in graph.get("output", [])]
    for index, tensor in enumerate(graph.get("initializer", [])):
        name = tensor.get("name", "")
        if name in names:
            raise NotCanonicalError(
                f"initializer {name!r} has the name of a graph input or another initializer, "
                "so a caller could override it"
            )
        names[name] = f"w{index}"
        lines.append(f"initializer w{index}: {_tensor_type(tensor)}")
    outputs = {v.get("name", "") for v in graph.get("output", [])}
    produced = 0
    for node in graph.get("node", []):
        used = ", ".join(names.get(n, f"?{n}") if n else "''" for n in node.get("input", []))
        made = []
        for name in node.get("output", []):
            if name in names:
                raise NotCanonicalError(f"{name!r} is written twice in the graph")
            names[name] = name if name in outputs else f"%{produced}"
            produced += 1
            made.append(names[name])
        attributes = " ".join(sorted(_attribute(a) for a in node.get("attribute", [])))
        domain = node.get("domain", "")
        op = f"{domain}::{node.get('op_type', '')}" if domain else node.get("op_type", "")
        lines.append(f"{op}({used}) -> ({', '.join(made)}) {attributes}".rstrip())
    return lines
