"""The loopback device's GPU delegate: real partitioning, real fp16 arithmetic error, real log lines.

What it decides follows LiteRT:
- which nodes it takes: every node whose op type the fake GPU supports and whose tensors are
  float32 (int32 shape/index inputs allowed); then, like `GraphPartitionHelper`
  (`tflite/delegates/utils.cc`) and `GetOpsToReplace` (`tflite/delegates/gpu/common/
  model_builder.cc`), the supported nodes form partitions and only the largest
  `max_delegated_partitions` of them are replaced (`<= 0` means 1: `tflite/delegates/gpu/
  delegate.cc`). Partitions here are maximal runs of supported nodes in execution order,
  which is what LiteRT's `PartitionGraph` yields on chain-shaped graphs.
- precision: `--gpu_precision_loss_allowed` (default true) sets MIN_LATENCY first
  (`tflite/tools/delegates/gpu_delegate_provider.cc`), i.e. fp16; false keeps the default
  MAX_PRECISION, i.e. fp32.
- the lines, in the tool's order: the delegate's "Created TensorFlow Lite delegate for GPU."
  (`delegate.cc`), the provider list's "GPU delegate created." (`tflite/tools/delegates/
  delegate_provider.cc`), the unsupported-ops report (`model_builder.cc`), the interpreter's
  "Replacing … node(s) …" (`tflite/core/subgraph.cc`, VERBOSE, which Android prints),
  "Initialized OpenCL-based API.", "Created N GPU delegate kernels." and the benchmark's
  "Explicitly applied GPU delegate, …" (`tflite/tools/benchmark/benchmark_tflite_model.cc`).
  Minimal-logging and ERROR lines go to stderr, `TFLITE_LOG(INFO)` to stdout, as on a phone.

How fp16 is computed (the honest part): the delegated nodes are rewritten in the .tflite so
that every float32 value entering or leaving them passes through float16 — constant inputs
(weights, biases) are stored rounded to float16, and each activation input and each output
goes through a CAST float32→float16→float32 pair inserted around the node. The arithmetic
inside one node then runs in float32 on LiteRT's CPU kernels over fp16-rounded operands, and
its result is rounded to fp16 again: fp16 storage with fp32 accumulation, the way mobile GPU
delegates keep tensors (a real GPU may also accumulate in fp16, so it errs at least this much).
The rewritten model is real LiteRT, so outputs really differ from the CPU's and can flip a top-1.
Quantized (int8/uint8) nodes are left to the CPU here, whatever `--gpu_experimental_enable_quant`
says (the real delegate would dequantize and take them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Delegation", "DEFAULT_PARTIAL_OPS", "count_ops", "delegate"]

# What "partial" mode supports by default: convolutions and pointwise ops, not the rest.
DEFAULT_PARTIAL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D")
_KERNEL_NAME = "TfLiteGpuDelegateV2"  # kRegistrationCustomName, tflite/delegates/gpu/delegate.cc


@dataclass
class Delegation:
    """What the fake GPU did to one model."""

    model: bytes  # the model the interpreter runs (fp16-rounded where delegated, when fp16)
    precision: str  # "fp16" or "fp32"
    ops_total: int
    ops_delegated: int
    kernels: int  # delegate kernels in the final execution plan (one per replaced partition)
    lines: list[tuple[str, str]] = field(default_factory=list)  # ("stdout"|"stderr", text)

    @property
    def fully_delegated(self) -> bool:
        # benchmark_tflite_model.cc: one delegate kernel and an execution plan of size 1.
        return self.kernels == 1 and self.ops_delegated == self.ops_total


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(model, op, schema) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = _enum_names(schema.BuiltinOperator)[builtin]
    if name == "CUSTOM" and code.customCode:  # GetOpNameByRegistration, tflite/util.cc
        name += " " + code.customCode.decode()
    return name


def _details(model, op, sg, supported: set[str] | None, schema) -> str:
    """Why the node is not taken ("" when it is): the delegate's own wording."""
    if supported is not None and _op_name(model, op, schema) not in supported:
        return "Operation is not supported."
    types = schema.TensorType
    for index in [*op.inputs, *op.outputs]:
        if index >= 0 and sg.tensors[index].type not in (types.FLOAT32, types.INT32):
            return "OP is supported, but tensor type/shape isn't compatible."
    return ""


def count_ops(model_bytes: bytes) -> int:
    """Nodes in the model's primary subgraph (the execution plan before any delegate)."""
    return _schema().Model.GetRootAsModel(model_bytes, 0).Subgraphs(0).OperatorsLength()


def _runs(flags: list[bool]) -> list[list[int]]:
    runs, current = [], []
    for i, taken in enumerate(flags):
        if taken:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def delegate(model_bytes: bytes, *, supported: set[str] | None, precision_loss_allowed: bool,
             max_delegated_partitions: int) -> Delegation:
    """Applies the fake GPU delegate to a .tflite.

    Args:
        model_bytes: the .tflite.
        supported: op type names the GPU takes (None: every float op).
        precision_loss_allowed: `--gpu_precision_loss_allowed` (fp16 when true).
        max_delegated_partitions: `--max_delegated_partitions` (<= 0: 1, as the delegate does).

    Returns:
        The `Delegation`: the model to run, the counts and the lines to print.
    """
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    sg = model.subgraphs[0]
    ops = list(sg.operators or [])
    why = [_details(model, op, sg, supported, schema) for op in ops]
    partitions = _runs([not w for w in why])
    keep = max(max_delegated_partitions, 1)
    # GetFirstNLargestPartitions: largest first (ties: earlier first here).
    chosen = sorted(sorted(partitions, key=len, reverse=True)[:keep], key=lambda p: p[0])
    taken = sorted(i for p in chosen for i in p)
    total = len(ops)
    lines = [("stderr", "INFO: Created TensorFlow Lite delegate for GPU."), ("stdout", "INFO: GPU delegate created.")]
    unsupported = sorted({f"{_op_name(model, op, schema)}: {w}" for op, w in zip(ops, why) if w})
    if unsupported and total > len(taken):
        tail = (f"{len(taken)} operations will run on the GPU, and the remaining {total - len(taken)}" if taken
                else f"No operations will run on the GPU, and all {total}")
        lines.append(("stderr", "ERROR: Following operations are not supported by GPU delegate:\n"
                      + "\n".join(unsupported) + f"\n{tail} operations will run on the CPU."))
    if taken:
        # Subsets PartitionGraph yields for the replaced nodes: delegated and CPU runs alike.
        subsets = len(_runs([i in taken for i in range(total)])) + len(_runs([i not in taken for i in range(total)]))
        name = sg.name.decode() if sg.name else ""
        lines.append(("stderr", f"VERBOSE: Replacing {len(taken)} out of {total} node(s) with delegate "
                      f"({_KERNEL_NAME}) node, yielding {subsets} partitions for subgraph 0 ({name})."))
        lines.append(("stderr", "INFO: Initialized OpenCL-based API."))
    lines.append(("stderr", f"INFO: Created {len(chosen)} GPU delegate kernels."))
    result = Delegation(model_bytes, "fp16" if precision_loss_allowed else "fp32", total, len(taken), len(chosen), lines)
    if result.fully_delegated:
        lines.append(("stdout", "INFO: Explicitly applied GPU delegate, and the model graph will be completely "
                      "executed by the delegate."))
    elif taken:
        lines.append(("stdout", "INFO: Explicitly applied GPU delegate, and the model graph will be partially "
                      f"executed by the delegate w/ {len(chosen)} delegate kernels."))
    else:
        lines.append(("stdout", "INFO: Though GPU delegate is explicitly applied, the model graph will not be "
                      "executed by the delegate."))
    if taken and precision_loss_allowed:
        result.model = _round_through_fp16(model, set(taken), schema)
    return result


def _round_through_fp16(model, taken: set[int], schema) -> bytes:
    """The model with the `taken` nodes' float32 operands and results rounded to float16."""
    import flatbuffers

    sg = model.subgraphs[0]
    types = schema.TensorType
    cast = _opcode(model, schema.BuiltinOperator.CAST, schema)

    def new_tensor(like, dtype, suffix: str, buffer: int = 0) -> int:
        t = schema.TensorT()
        t.shape, t.shapeSignature, t.type = like.shape, like.shapeSignature, dtype
        t.name = (like.name or b"") + suffix.encode()
        t.buffer = buffer
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def cast_op(src: int, dst: int, in_type, out_type):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = cast, np.array([src], np.int32), np.array([dst], np.int32)
        op.builtinOptionsType = schema.BuiltinOptions.CastOptions
        op.builtinOptions = schema.CastOptionsT()
        op.builtinOptions.inDataType, op.builtinOptions.outDataType = in_type, out_type
        return op

    def round_pair(src: int, dst: int, stem: str) -> list:
        half = new_tensor(sg.tensors[src], types.FLOAT16, f"/fake_gpu_fp16_{stem}")
        return [cast_op(src, half, types.FLOAT32, types.FLOAT16), cast_op(half, dst, types.FLOAT16, types.FLOAT32)]

    rounded: dict[int, int] = {}  # activation or constant tensor -> its fp16-rounded copy
    operators = []
    for index, op in enumerate(sg.operators):
        if index not in taken:
            operators.append(op)
            continue
        inputs = np.array(op.inputs, np.int32)
        for k, t in enumerate(inputs):
            if t < 0 or sg.tensors[t].type != types.FLOAT32:
                continue
            if t not in rounded:
                data = model.buffers[sg.tensors[t].buffer].data
                if data is not None and len(data):  # a constant: store it rounded
                    values = np.frombuffer(bytes(bytearray(data)), "<f4").astype(np.float16).astype("<f4")
                    buffer = schema.BufferT()
                    buffer.data = np.frombuffer(values.tobytes(), np.uint8)
                    model.buffers.append(buffer)
                    rounded[t] = new_tensor(sg.tensors[t], types.FLOAT32, "/fake_gpu_fp16", len(model.buffers) - 1)
                else:
                    rounded[t] = new_tensor(sg.tensors[t], types.FLOAT32, "/fake_gpu_fp16_in")
                    operators.extend(round_pair(t, rounded[t], f"in{t}"))
            inputs[k] = rounded[t]
        op.inputs = inputs
        outputs = np.array(op.outputs, np.int32)
        after = []
        for k, t in enumerate(outputs):
            if t >= 0 and sg.tensors[t].type == types.FLOAT32:
                raw = new_tensor(sg.tensors[t], types.FLOAT32, "/fake_gpu_fp32_out")
                outputs[k] = raw
                after.extend(round_pair(raw, t, f"out{t}"))
                rounded[t] = t  # already rounded for the delegated nodes that read it
        op.outputs = outputs
        operators.append(op)
        operators.extend(after)
    sg.operators = operators
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(model, builtin: int, schema) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
