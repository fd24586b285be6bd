"""Make a graph's vector normalisations defined at zero, on the ONNX bytes themselves.

The M2S graph turns the jaw's axis-angle into a rotation with Rodrigues' formula,
R = I + sin θ·K(v/θ) + (1 − cos θ)·K(v/θ)², θ = |v|. Its exporter dropped the
epsilon smplx adds to θ, so the graph computes `v / ReduceL2(v)`: 0/0 = NaN for
the rest pose v = 0, the most common jaw frame there is, and the NaN then spreads
through every frame's attention. The rotation of zero is defined (R = I): with
the divisor clamped, `v / max(|v|, tiny)` is 0 at v = 0, so K = 0 and R = I
exactly, while every other input (|v| ≥ tiny) computes as before, bit for bit.

`safe_normalisation` rewrites every `Div(x, ReduceL2(x))` of a graph into
`Div(x, Max(ReduceL2(x), tiny))`. It edits the protobuf wire format directly
(a few dozen lines) because the backend's runtime has no `onnx` package; fields
it does not touch are copied byte for byte.
"""

from __future__ import annotations

import struct

TINY = 1e-30  # far below any real rotation (radians), far above float32's smallest normal

# ONNX protobuf field numbers (onnx/onnx.proto3)
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE = 1, 2, 3, 4
TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA = 2, 8, 9
FLOAT = 1


# ---- protobuf wire format: a message is a list of (field, wire type, value) ----


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse(buf: bytes) -> list[tuple[int, int, object]]:
    """Fields of one message; length-delimited values stay raw bytes (memoryview slices)."""
    view, pos, fields = memoryview(buf), 0, []
    while pos < len(view):
        key, pos = _varint(view, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 1:
            value, pos = view[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(view, pos)
            value, pos = view[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = view[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((field, wire, value))
    return fields


def serialise(fields) -> bytes:
    out = []
    for field, wire, value in fields:
        out.append(_encode_varint(field << 3 | wire))
        if wire == 0:
            out.append(_encode_varint(value))
        elif wire == 2:
            out += [_encode_varint(len(value)), bytes(value)]
        else:
            out.append(bytes(value))
    return b"".join(out)


def _strings(fields, number: int) -> list[str]:
    return [bytes(v).decode() for f, w, v in fields if f == number and w == 2]


def _node(op_type: str, inputs: list[str], outputs: list[str], name: str) -> bytes:
    fields = [(NODE_INPUT, 2, s.encode()) for s in inputs] + [(NODE_OUTPUT, 2, s.encode()) for s in outputs]
    return serialise(fields + [(NODE_NAME, 2, name.encode()), (NODE_OP_TYPE, 2, op_type.encode())])


def _scalar(name: str, value: float) -> bytes:
    return serialise(
        [(TENSOR_DATA_TYPE, 0, FLOAT), (TENSOR_NAME, 2, name.encode()), (TENSOR_RAW_DATA, 2, struct.pack("<f", value))]
    )


def _with_input(node_fields, index: int, name: str):
    """The node with its `index`-th input renamed."""
    out, seen = [], 0
    for field, wire, value in node_fields:
        if field == NODE_INPUT:
            if seen == index:
                value = name.encode()
            seen += 1
        out.append((field, wire, value))
    return out


def safe_normalisation(model: bytes, tiny: float = TINY) -> tuple[bytes, int]:
    """(model bytes, number of divisions made safe); the input unchanged when there are none."""
    top = parse(model)
    graph_at = [i for i, (f, w, _) in enumerate(top) if f == MODEL_GRAPH and w == 2]
    if len(graph_at) != 1:
        return model, 0
    graph = parse(top[graph_at[0]][2])
    nodes = [(i, parse(v)) for i, (f, w, v) in enumerate(graph) if f == GRAPH_NODE and w == 2]
    norms = {}  # ReduceL2 output -> (its input, graph index)
    for i, fields in nodes:
        if _strings(fields, NODE_OP_TYPE) == ["ReduceL2"]:
            ins, outs = _strings(fields, NODE_INPUT), _strings(fields, NODE_OUTPUT)
            if ins and len(outs) == 1:
                norms[outs[0]] = (ins[0], i)
    replaced, added = {}, {}  # graph index -> new node bytes / nodes to insert after it
    for i, fields in nodes:
        ins = _strings(fields, NODE_INPUT)
        if _strings(fields, NODE_OP_TYPE) != ["Div"] or len(ins) != 2 or ins[1] not in norms:
            continue
        source, norm_at = norms[ins[1]]
        if source != ins[0]:
            continue
        safe = f"{ins[1]}__safe"
        replaced[i] = serialise(_with_input(fields, 1, safe))
        if safe not in {s for extra in added.values() for s in extra}:
            added.setdefault(norm_at, {})[safe] = _node("Max", [ins[1], f"{safe}_tiny"], [safe], f"{safe}_max")
    if not replaced:
        return model, 0
    new_graph = []
    for i, (field, wire, value) in enumerate(graph):
        new_graph.append((field, wire, replaced.get(i, value)))
        for node in added.get(i, {}).values():
            new_graph.append((GRAPH_NODE, 2, node))
    for extra in added.values():
        for safe in extra:
            new_graph.append((GRAPH_INITIALIZER, 2, _scalar(f"{safe}_tiny", tiny)))
    top[graph_at[0]] = (MODEL_GRAPH, 2, serialise(new_graph))
    return serialise(top), len(replaced)
