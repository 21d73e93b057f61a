"""`benchmark_model`'s input and output files, as LiteRT's tool reads and writes them.

Everything here follows `tflite/tools/benchmark/benchmark_tflite_model.cc` (LiteRT):

- `--input_layer=a,b` and `--input_layer_shape=1,224,224,3:1,20` name and size the model's
  inputs *by position*: item i describes the model's i-th input. A name that differs from the
  tensor's only draws `WARN: Tensor # <index> is named <tensor> but flags call it <name>`; the
  names key `--input_layer_value_range` and `--input_layer_value_files`.
- `--input_layer_value_range=a,1,2:b,0,254`: inclusive integer bounds for random data.
- `--input_layer_value_files=a:path,b:path`: the file is the tensor's raw bytes (C order, the
  tensor's dtype, native little-endian), exactly `tensor.bytes` long after the resize, else
  `FATAL: The size of <path> is <n> bytes. It should be <bytes> bytes.` and abort. ":" inside a
  name is written "::". A string tensor's file is '\\0'-separated strings (or, for a ".pb" file,
  one string of the whole file).
- `--output_filepath=path`: each output tensor's raw bytes, concatenated in the model's output
  order, written once, at the end of the benchmark (`OutputSaver::OnBenchmarkEnd`), i.e. the
  outputs of the last timed run. Nothing is logged; a file that cannot be opened is skipped.

A `TFLITE_LOG(FATAL)` prints `FATAL: <message>` on stderr and calls `std::abort()`
(`tflite/tools/logging.h`): `ToolFatal` carries it to the entry point, which aborts too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "InputLayer", "ToolError", "ToolFatal", "check_against_model", "load_value_file",
    "output_bytes", "parse_input_layers", "sha256", "split_name_and_file",
]


class ToolFatal(Exception):
    """A `TFLITE_LOG(FATAL)`: `FATAL: <message>` on stderr, then `std::abort()` (exit 134 in sh)."""


class ToolError(Exception):
    """`TFLITE_LOG(ERROR)` lines and a failed status: each as `ERROR: <line>`, then
    `ERROR: Benchmarking failed.`, exit 1. `args` are the lines."""


@dataclass
class InputLayer:
    """One `--input_layer` item (`BenchmarkTfLiteModel::InputLayerInfo`)."""

    name: str
    shape: tuple[int, ...]
    low: int | None = None
    high: int | None = None
    file: str = ""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _split(text: str, delim: str) -> list[str]:
    return text.split(delim) if text else []  # `Split`: "" is no items, else absl::StrSplit


def split_name_and_file(item: str) -> tuple[str, str]:
    """`SplitInputLayerNameAndValueFile`: one unescaped ":" splits; "::" stands for ":"."""
    delim = -1
    i = 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 1
            elif delim == -1:
                delim = i
            else:
                raise ToolError(f"{item} contains more than one delimiter.")
        i += 1
    if delim == -1:
        raise ToolError(f"{item} doesn't contain any delimiter.")
    return item[:delim].replace("::", ":"), item[delim + 1:].replace("::", ":")


def _find(layers: list[InputLayer], name: str, names: str) -> InputLayer:
    for layer in layers:
        if layer.name == name:
            return layer
    raise ToolFatal(f"Cannot find the corresponding input_layer name({name}) in --input_layer as {names}")


def parse_input_layers(names: str, shapes: str, value_ranges: str, value_files: str,
                       warn: Callable[[str], None]) -> list[InputLayer]:
    """`PopulateInputLayerInfo`: the four flags as the tool reads them (empty names: none)."""
    name_items, shape_items = _split(names, ","), _split(shapes, ":")
    if len(name_items) != len(shape_items):
        raise ToolError(
            f"The number of items in --input_layer_shape ({shapes}, with {len(shape_items)} items) must "
            f"match the number of items in --input_layer ({names}, with {len(name_items)} items). For "
            "example --input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20")
    layers = []
    for name, shape in zip(name_items, shape_items):
        try:
            dims = tuple(int(d) for d in shape.split(","))
        except ValueError:
            raise ToolFatal(f"Incorrect size string specified: {shape}") from None
        if -1 in dims:
            raise ToolError("Any unknown sizes in the shapes (-1's) must be replaced with the size you "
                            "want to benchmark with.")
        layers.append(InputLayer(name, dims))
    for item in _split(value_ranges, ":"):
        parts = _split(item, ",")
        if len(parts) != 3:
            raise ToolError(f"Wrong input value range item specified: {item}")
        layer = _find(layers, parts[0], names)
        try:
            low, high = int(parts[1]), int(parts[2])
        except ValueError:
            low, high = 1, 0
        if low > high:
            raise ToolError(f"Wrong low and high value of the input value range specified: {item}")
        layer.low, layer.high = low, high
    for item in _split(value_files, ","):
        try:
            name, path = split_name_and_file(item)
        except ToolError as exc:  # the item, then the status (kTfLiteError prints as 1)
            raise ToolError(*exc.args, f"Wrong input value file item specified: {item}", "1") from None
        layer = _find(layers, name, names)
        if layer.low is not None:
            warn(f"The input_name:{layer.name} appears both in input_layer_value_files and "
                 "input_layer_value_range. The input_layer_value_range of the input_name will be ignored.")
        layer.file = path
    return layers


def check_against_model(layers: list[InputLayer], details: list[dict], warn: Callable[[str], None]) -> None:
    """`BenchmarkTfLiteModel::Init`'s checks of the flags against the model's inputs."""
    if layers and len(layers) != len(details):
        raise ToolFatal(f"Inputs mismatch: Model inputs #:{len(layers)} expected: {len(details)}")
    for layer, detail in zip(layers, details):
        if layer.name != detail["name"]:
            warn(f"Tensor # {detail['index']} is named {detail['name']} but flags call it {layer.name}")
        if np.dtype(detail["dtype"]) != np.object_ and len(layer.shape) != len(detail["shape"]):
            raise ToolError(f"Input tensor #{detail['index']} should have {len(detail['shape'])} dimensions!")


def load_value_file(path: str, dtype, shape: tuple[int, ...], info: Callable[[str], None]):
    """`LoadInputTensorData`: the array a value file holds for a tensor of `dtype` and `shape`."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        raise ToolFatal(f"Failed to read the input_layer_value_file:{path}") from None
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == np.object_ or dtype.kind in "SU":  # kTfLiteString
        if len(path) > 3 and path.endswith(".pb"):
            info(f"Read {len(data)} bytes data from {path}.")
            return np.array([data], dtype=object)
        strings = data.split(b"\0")
        if strings[-1] == b"":  # getline(…, '\0') yields no item after a final delimiter
            strings.pop()
        if len(strings) != count:
            raise ToolFatal(f"The number of string in the input_layer_value_file({path}) is {len(strings)}. "
                            f"It should be {count}.")
        return np.array(strings, dtype=object).reshape(shape)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise ToolFatal(f"The size of {path} is {len(data)} bytes. It should be {expected} bytes.")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def output_bytes(interpreter) -> bytes:
    """`OutputSaver`: every output tensor's raw bytes, in output order, concatenated."""
    return b"".join(np.ascontiguousarray(interpreter.get_tensor(d["index"])).tobytes()
                    for d in interpreter.get_output_details())
