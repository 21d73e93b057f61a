"""LiteRT's `--result_file_path` file: a binary `tflite.tools.benchmark.BenchmarkResult` proto.

Current LiteRT's `benchmark_model` ("Path to save the benchmark result in binary proto
format") serialises `tflite/tools/benchmark/proto/benchmark_result.proto` (proto2): latency
in float milliseconds (avg, min, max, stddev, median, p5, p95, init, first inference,
warm-up average), memory footprint and the run counts. It holds no per-run times, so p90/p99
cannot come from it. The message classes are built here from those field numbers with
protobuf's descriptor API (protobuf ships with TensorFlow; no generated code to vendor).

Older tools wrote one latency (µs) per line to the same path; `read_result_file` tells the
two apart and says which it read.

Example:
    >>> data = encode(ToolResult(avg_ms=1.5, median_ms=1.4, p5_ms=1.0, p95_ms=2.0, num_runs=9))
    >>> decode(data).p95_ms
    2.0
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

__all__ = ["ToolResult", "decode", "encode", "read_result_file"]

logger = logging.getLogger(__name__)

_PACKAGE = "tflite.tools.benchmark"
_FLOAT = descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT
_INT64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
_INT32 = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
# (message, [(field, number, type, message type)]) as in LiteRT's benchmark_result.proto.
_SCHEMA = (
    ("LatencyMetrics", [
        ("avg_ms", 1, _FLOAT), ("min_ms", 2, _FLOAT), ("max_ms", 3, _FLOAT),
        ("stddev_ms", 4, _FLOAT), ("median_ms", 5, _FLOAT), ("p5_ms", 6, _FLOAT),
        ("p95_ms", 7, _FLOAT), ("init_ms", 8, _FLOAT), ("first_inference_ms", 9, _FLOAT),
        ("average_warm_up_ms", 10, _FLOAT),
    ]),
    ("MemoryMetrics", [
        ("init_footprint_kb", 1, _INT64), ("overall_footprint_kb", 2, _INT64),
        ("peak_mem_mb", 3, _FLOAT),
    ]),
    ("MiscMetrics", [
        ("model_size_mb", 1, _FLOAT), ("num_runs", 2, _INT32), ("num_warmup_runs", 3, _INT32),
        ("model_throughput_in_mb_per_sec", 4, _FLOAT),
    ]),
    ("BenchmarkResult", [
        ("name", 1, _STRING), ("latency_metrics", 2, "LatencyMetrics"),
        ("memory_metrics", 3, "MemoryMetrics"), ("misc_metrics", 4, "MiscMetrics"),
    ]),
)
_SUBMESSAGE = {"LatencyMetrics": "latency_metrics", "MemoryMetrics": "memory_metrics",
               "MiscMetrics": "misc_metrics"}


def _message_class():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="mobile_opt/benchmark_result.proto", package=_PACKAGE, syntax="proto2"
    )
    for name, fields in _SCHEMA:
        message = file_proto.message_type.add(name=name)
        for field_name, number, kind in fields:
            field = message.field.add(
                name=field_name, number=number,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
            )
            if isinstance(kind, str):
                field.type, field.type_name = _MESSAGE, f".{_PACKAGE}.{kind}"
            else:
                field.type = kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{_PACKAGE}.BenchmarkResult")
    )


_BenchmarkResult = _message_class()


@dataclass(frozen=True)
class ToolResult:
    """The fields of LiteRT's BenchmarkResult, flattened; None where the tool left one unset."""

    name: str | None = None
    avg_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    stddev_ms: float | None = None
    median_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    average_warm_up_ms: float | None = None
    init_footprint_kb: int | None = None
    overall_footprint_kb: int | None = None
    peak_mem_mb: float | None = None
    model_size_mb: float | None = None
    num_runs: int | None = None
    num_warmup_runs: int | None = None
    model_throughput_in_mb_per_sec: float | None = None


def _where(field_name: str) -> str | None:
    for message, fields in _SCHEMA[:3]:
        if any(f[0] == field_name for f in fields):
            return _SUBMESSAGE[message]
    return None


def decode(data: bytes) -> ToolResult:
    """Decodes a serialised BenchmarkResult.

    Raises:
        ValueError: the bytes are not a BenchmarkResult (wire-format error, or nothing set).
    """
    message = _BenchmarkResult()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"not a BenchmarkResult proto: {exc}") from exc
    values = {}
    for field in dataclasses.fields(ToolResult):
        parent = _where(field.name)
        holder = getattr(message, parent) if parent else message
        if (parent is None or message.HasField(parent)) and holder.HasField(field.name):
            values[field.name] = getattr(holder, field.name)
    if not message.HasField("latency_metrics"):
        raise ValueError("not a BenchmarkResult proto: no latency_metrics")
    return ToolResult(**values)


def encode(result: ToolResult) -> bytes:
    """Serialises a `ToolResult` as LiteRT's tool does (used by our host benchmark)."""
    message = _BenchmarkResult()
    for field in dataclasses.fields(ToolResult):
        value = getattr(result, field.name)
        if value is None:
            continue
        parent = _where(field.name)
        setattr(getattr(message, parent) if parent else message, field.name, value)
    return message.SerializeToString()


def read_result_file(data: bytes) -> tuple[ToolResult | None, list[float] | None]:
    """(proto result, None) for current LiteRT, (None, per-run µs) for older tools' text file.

    (None, None) when the file is neither (empty, garbage).
    """
    if not data:
        return None, None
    try:
        text = data.decode("ascii")
        samples = [float(v) for v in text.split()]
    except (UnicodeDecodeError, ValueError):
        samples = None
    if samples:
        return None, samples
    try:
        return decode(data), None
    except ValueError as exc:
        logger.info("result file is neither a BenchmarkResult proto nor text: %s", exc)
        return None, None
