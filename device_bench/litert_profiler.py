"""Per-op times on the host from LiteRT's own profiler (the C API in the ai-edge-litert wheel).

LiteRT's Python API has no profiler, but the wheel's `libLiteRt.so` exports the C one
(`litert/c/litert_profiler.h`): a `CompiledModel` compiled with the runtime option
`enable_profiling = true` records one event per op and run, as `benchmark_model
--enable_op_profiling` does on a phone. We reach it with ctypes because no Python binding of
it exists (ai-edge-litert 2.3.0); the structs below follow `litert_profiler_event.h` and
`litert_layout.h`, and every call's status is checked.

Two kernel paths, as the tool has:
- XNNPACK (the default): events are XNNPACK operators (`"Convolution (NHWC, F32) IGEMM"`),
  indexed within the delegate; a PAD that XNNPACK fuses into a convolution has no event.
- builtin kernels (`use_xnnpack=False`): one event per .tflite operator, with its node index.

Times are whole microseconds per op and run (the profiler's unit), each within 1 µs of the
true time; the `Invoke` event of each run gives the total the ops are a part of.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from mobile_opt.errors import BenchmarkError

__all__ = ["OpEvents", "ProfiledRuns", "profile_ops"]

_DEFAULT = 1
_OPERATOR_INVOKE = 1 << 1  # LiteRtProfilerEventType: event_metadata1 is the node index
_DELEGATE_PROFILED_OPERATOR_INVOKE = 1 << 3  # an XNNPACK op, indexed within the delegate
_LOCK_WRITE = 1
_HW_CPU = 1
_MAX_RANK = 8  # LITERT_TENSOR_MAX_RANK
_NO_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: None)  # payloads are Python-owned


class _MemoryUsage(ctypes.Structure):
    _fields_ = [("total_allocated_bytes", ctypes.c_size_t), ("in_use_allocated_bytes", ctypes.c_size_t),
                ("private_footprint_bytes", ctypes.c_size_t)]


class _Event(ctypes.Structure):
    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int), ("start_timestamp_us", ctypes.c_uint64),
                ("elapsed_time_us", ctypes.c_uint64), ("begin_mem_usage", _MemoryUsage),
                ("end_mem_usage", _MemoryUsage), ("event_metadata1", ctypes.c_uint64),
                ("event_metadata2", ctypes.c_uint64), ("event_source", ctypes.c_int)]


class _RankedTensorType(ctypes.Structure):
    # element_type, then LiteRtLayout {rank:7, has_strides:1 bit-fields; dimensions; strides}.
    _fields_ = [("element_type", ctypes.c_int), ("rank", ctypes.c_uint, 7), ("has_strides", ctypes.c_uint, 1),
                ("dimensions", ctypes.c_int32 * _MAX_RANK), ("strides", ctypes.c_uint32 * _MAX_RANK)]


@dataclass(frozen=True)
class OpEvents:
    """One op's events over the profiled runs, in run order."""

    tag: str  # the .tflite op name (builtin kernels) or the XNNPACK operator's name
    delegated: bool  # True: an XNNPACK operator; `index` counts within the delegate
    index: int
    elapsed_us: tuple[int, ...]  # one per run


@dataclass(frozen=True)
class ProfiledRuns:
    """What LiteRT's profiler recorded: each op's events in execution order, and each run's Invoke."""

    ops: tuple[OpEvents, ...]
    invoke_us: tuple[int, ...]


def _library() -> ctypes.CDLL:
    try:
        import ai_edge_litert
    except ImportError as exc:
        raise BenchmarkError("per-op profiling on this host needs the ai-edge-litert wheel "
                             "(pip install ai-edge-litert)") from exc
    path = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
    try:
        lib = ctypes.CDLL(str(path))
        lib.LiteRtCompiledModelGetProfiler  # noqa: B018 - an older wheel lacks the profiler
    except (OSError, AttributeError) as exc:
        raise BenchmarkError(f"LiteRT's C profiler is not in {path.name}: {exc}") from exc
    return lib


def _fill(lib, buffer, data) -> None:
    size = ctypes.c_size_t()
    _check(lib.LiteRtGetTensorBufferSize(buffer, ctypes.byref(size)), "LiteRtGetTensorBufferSize")
    if data.nbytes != size.value:
        raise BenchmarkError(f"an input of {data.nbytes} bytes for a LiteRT buffer of {size.value}")
    host = ctypes.c_void_p()
    _check(lib.LiteRtLockTensorBuffer(buffer, ctypes.byref(host), _LOCK_WRITE), "LiteRtLockTensorBuffer")
    try:
        ctypes.memmove(host, data.ctypes.data, data.nbytes)
    finally:
        _check(lib.LiteRtUnlockTensorBuffer(buffer), "LiteRtUnlockTensorBuffer")


def _check(status: int, call: str) -> None:
    if status != 0:
        raise BenchmarkError(f"LiteRT's {call} failed (status {status})")


class _Session:
    """A profiling-enabled CompiledModel with its buffers; `close` frees every LiteRT object."""

    def __init__(self, lib, path: Path, threads: int, use_xnnpack: bool) -> None:
        self.lib, self._owned = lib, []
        c = ctypes
        self.env = self._new("LiteRtCreateEnvironment", "LiteRtDestroyEnvironment", 0, None)
        self.model = self._new("LiteRtCreateModelFromFile", "LiteRtDestroyModel", self.env, str(path).encode())
        options = self._new("LiteRtCreateOptions", "LiteRtDestroyOptions")
        _check(lib.LiteRtSetOptionsHardwareAccelerators(options, _HW_CPU), "LiteRtSetOptionsHardwareAccelerators")
        cpu = "" if threads <= 0 else f"num_threads = {threads}\n"
        cpu += "" if use_xnnpack else 'kernel_mode = "builtin"\n'
        # Opaque options carry TOML (litert_runtime_options.cc, litert_cpu_options.cc); the
        # payloads stay alive in self._keep, so the destructor has nothing to free.
        self._keep = []
        for identifier, toml in (("runtime_options_string", "enable_profiling = true\n"), ("xnnpack", cpu)):
            payload = c.create_string_buffer(toml.encode())
            self._keep.append(payload)
            opaque = c.c_void_p()
            _check(lib.LiteRtCreateOpaqueOptions(identifier.encode(), c.cast(payload, c.c_void_p), _NO_FREE,
                                                 c.byref(opaque)), "LiteRtCreateOpaqueOptions")
            _check(lib.LiteRtAddOpaqueOptions(options, opaque), "LiteRtAddOpaqueOptions")
        self.compiled = self._new("LiteRtCreateCompiledModel", "LiteRtDestroyCompiledModel",
                                  self.env, self.model, options)
        self.signature = c.c_void_p()
        _check(lib.LiteRtGetModelSignature(self.model, 0, c.byref(self.signature)), "LiteRtGetModelSignature")

    def _new(self, create: str, destroy: str, *args):
        handle = ctypes.c_void_p()
        _check(getattr(self.lib, create)(*args, ctypes.byref(handle)), create)
        self._owned.append((destroy, handle))
        return handle

    def buffers(self, kind: str, inputs: Mapping[str, object] | None = None) -> list:
        """Input (filled from `inputs` by tensor name) or output buffers of signature 0; a
        dynamic batch dimension runs as 1."""
        c, lib, out = ctypes, self.lib, []
        count = c.c_size_t()
        _check(getattr(lib, f"LiteRtGetNumSignature{kind}s")(self.signature, c.byref(count)), kind)
        for i in range(count.value):
            tensor, ttype = c.c_void_p(), _RankedTensorType()
            _check(getattr(lib, f"LiteRtGetSignature{kind}TensorByIndex")(self.signature, i, c.byref(tensor)), kind)
            _check(lib.LiteRtGetRankedTensorType(tensor, c.byref(ttype)), "LiteRtGetRankedTensorType")
            dims = [1 if d < 0 else d for d in ttype.dimensions[:ttype.rank]]
            if kind == "Input" and list(ttype.dimensions[:ttype.rank]) != dims:
                _check(lib.LiteRtCompiledModelResizeInputTensor(self.compiled, 0, i, (c.c_int * len(dims))(*dims),
                                                                len(dims)), "LiteRtCompiledModelResizeInputTensor")
            ttype.dimensions[:len(dims)] = dims
            needs = c.c_void_p()
            _check(getattr(lib, f"LiteRtGetCompiledModel{kind}BufferRequirements")(self.compiled, 0, i,
                                                                                    c.byref(needs)), kind)
            buffer = self._new("LiteRtCreateManagedTensorBufferFromRequirements", "LiteRtDestroyTensorBuffer",
                               self.env, c.byref(ttype), needs)
            if kind == "Input":
                name = c.c_char_p()
                _check(lib.LiteRtGetTensorName(tensor, c.byref(name)), "LiteRtGetTensorName")
                if name.value.decode() not in inputs:
                    raise BenchmarkError(f"no data for the model's input {name.value.decode()!r}")
                _fill(lib, buffer, inputs[name.value.decode()])
            out.append(buffer)
        return out

    def close(self) -> None:
        for destroy, handle in reversed(self._owned):
            getattr(self.lib, destroy)(handle)
        self._owned.clear()


def profile_ops(path: str | Path, inputs: Mapping[str, object], *, runs: int, threads: int = 1,
                use_xnnpack: bool = True) -> ProfiledRuns:
    """Runs `path` `runs` times under LiteRT's profiler (after one unprofiled warm-up run).

    Args:
        path: the .tflite model.
        inputs: one C-contiguous numpy array per input tensor, by tensor name (the host
            benchmark's own inputs, so both passes run on the same data).
        runs: profiled runs (>= 1).
        threads: CPU threads (<= 0: the runtime's default).
        use_xnnpack: False runs TFLite's builtin kernels, one event per .tflite operator.

    Raises:
        BenchmarkError: the wheel or one of its calls is missing or fails.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    with _native_log() as log:
        try:
            return _profile(_library(), Path(path), inputs, runs, threads, use_xnnpack)
        except BenchmarkError as exc:
            errors = [line for line in log() if line.startswith(("ERROR", "FATAL"))]
            raise BenchmarkError("; ".join([str(exc), *errors[-3:]])) from exc


@contextlib.contextmanager
def _native_log():
    """LiteRT's C code logs to fd 2 (a dozen INFO/WARNING lines per model); keep it for errors only."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def lines() -> list[str]:
            sink.seek(0)
            return sink.read().decode(errors="replace").splitlines()

        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _profile(lib, path: Path, data: Mapping[str, object], runs: int, threads: int,
             use_xnnpack: bool) -> ProfiledRuns:
    session = _Session(lib, path, threads, use_xnnpack)
    try:
        inputs, outputs = session.buffers("Input", data), session.buffers("Output")
        in_arr, out_arr = (ctypes.c_void_p * len(inputs))(*inputs), (ctypes.c_void_p * len(outputs))(*outputs)

        def run() -> None:
            _check(lib.LiteRtRunCompiledModel(session.compiled, 0, len(inputs), in_arr, len(outputs), out_arr),
                   "LiteRtRunCompiledModel")

        run()  # warm-up: allocation and XNNPACK's weight packing happen on the first run
        profiler = ctypes.c_void_p()
        _check(lib.LiteRtCompiledModelGetProfiler(session.compiled, ctypes.byref(profiler)),
               "LiteRtCompiledModelGetProfiler")
        _check(lib.LiteRtResetProfiler(profiler), "LiteRtResetProfiler")
        _check(lib.LiteRtStartProfiler(profiler), "LiteRtStartProfiler")
        for _ in range(runs):
            run()
        _check(lib.LiteRtStopProfiler(profiler), "LiteRtStopProfiler")
        count = ctypes.c_int()
        _check(lib.LiteRtGetNumProfilerEvents(profiler, ctypes.byref(count)), "LiteRtGetNumProfilerEvents")
        events = (_Event * count.value)()
        _check(lib.LiteRtGetProfilerEvents(profiler, count.value, events), "LiteRtGetProfilerEvents")
        return _group(events, runs)  # before close: the tags are the profiler's strings
    finally:
        session.close()


def _group(events, runs: int) -> ProfiledRuns:
    # Grouped by position within a run, not by index: each delegate partition numbers its
    # operators from 0 (an int8 model's QUANTIZE and DEQUANTIZE are both XNNPACK op 0).
    ops, invoke = [], []
    for e in events:
        tag = (e.tag or b"").decode(errors="replace")
        if e.event_type in (_OPERATOR_INVOKE, _DELEGATE_PROFILED_OPERATOR_INVOKE):
            ops.append((tag, e.event_type == _DELEGATE_PROFILED_OPERATOR_INVOKE, int(e.event_metadata1),
                        int(e.elapsed_time_us)))
        elif tag == "Invoke" and e.event_type == _DEFAULT:  # not the telemetry event of the same name
            invoke.append(int(e.elapsed_time_us))
    per_run = len(ops) // runs
    sequences = [ops[k * per_run:(k + 1) * per_run] for k in range(runs)]
    if len(invoke) != runs or len(ops) != per_run * runs or any(
            [o[:3] for o in seq] != [o[:3] for o in sequences[0]] for seq in sequences):
        raise BenchmarkError(f"LiteRT's profiler recorded {len(invoke)} invocations and {len(ops)} op events "
                             f"for {runs} runs, not the same ops in every run; profile fewer runs")
    return ProfiledRuns(
        ops=tuple(OpEvents(tag, delegated, index, tuple(seq[k][3] for seq in sequences))
                  for k, (tag, delegated, index, _) in enumerate(sequences[0])),
        invoke_us=tuple(invoke))


def run_order_table(profiled: ProfiledRuns, output_names: dict[int, str]) -> str:
    """The "Run Order" table of `benchmark_model --enable_op_profiling`, in the tool's format.

    Names follow the tool's profile summarizer: `[<output tensors>]:<node index>` for a .tflite
    operator, `Delegate/<op>:<index>` for a delegate's own operator.
    """
    total = sum(sum(op.elapsed_us) for op in profiled.ops) or 1
    lines = ["============================== Run Order ==============================",
             "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]"]
    cdf = 0.0
    for op in profiled.ops:
        share = 100.0 * sum(op.elapsed_us) / total
        cdf += share
        name = (f"Delegate/{op.tag}:{op.index}" if op.delegated
                else f"[{output_names.get(op.index, '')}]:{op.index}")
        avg_ms = sum(op.elapsed_us) / len(op.elapsed_us) / 1000
        lines.append(f"\t{op.tag}\t{op.elapsed_us[0] / 1000:.3f}\t{avg_ms:.3f}\t{share:.3f}%\t{cdf:.3f}%"
                     f"\t0.000\t1\t{name}")  # [times called] is per run
    return "\n".join(lines) + "\n"
