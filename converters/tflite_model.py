"""Read a .tflite file into plain, frozen Python objects (graph, tensors, weights).

The flatbuffer is read with the schema bindings shipped in ai-edge-litert
(`ai_edge_litert.schema_py_generated`), not with the Analyzer's text output.

The Python flatbuffers library does no verification: every offset it follows
and every vector length it reads comes straight from the file. A damaged or
hostile file could therefore make a naive reader loop over 2**32 "elements",
allocate a huge array, or walk the same vector again and again through aliased
offsets. This reader checks each vector length against the file size before
iterating, checks every buffer's offset/size against the file, and charges all
structure it visits to a budget proportional to the file size, so any input
either parses or raises `ModelFormatError` quickly.

Example:
    >>> model = load_tflite("model.tflite")                # doctest: +SKIP
    >>> [t.name for t in model.subgraphs[0].tensors if t.is_constant]   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters._compat_flatbuffers import inline_vector
from mobile_opt.errors import InputError, ModelFormatError

__all__ = [
    "BufferInfo",
    "DimensionMetadata",
    "MetadataEntry",
    "Operator",
    "Quantization",
    "SignatureDef",
    "SparsityInfo",
    "Subgraph",
    "TFLiteModel",
    "Tensor",
    "load_tflite",
]

_IDENTIFIER = b"TFL3"
# Exceptions the generated accessors raise on out-of-range or garbage offsets.
_GARBAGE_ERRORS = (struct.error, IndexError, ValueError, TypeError, OverflowError)

# Bits per element of each tensor type (None: no fixed width, e.g. string).
_TYPE_BITS: dict[str, int | None] = {
    "float32": 32, "float16": 16, "int32": 32, "uint8": 8, "int64": 64, "string": None,
    "bool": 8, "int16": 16, "complex64": 64, "int8": 8, "float64": 64, "complex128": 128,
    "uint64": 64, "resource": None, "variant": None, "uint32": 32, "uint16": 16,
    "int4": 4, "bfloat16": 16, "int2": 2, "uint4": 4, "float8_e4m3fn": 8, "float8_e5m2": 8,
}
_NUMPY_DTYPES = {
    "float32": "<f4", "float16": "<f2", "int32": "<i4", "uint8": "u1", "int64": "<i8",
    "bool": "?", "int16": "<i2", "complex64": "<c8", "int8": "i1", "float64": "<f8",
    "complex128": "<c16", "uint64": "<u8", "uint32": "<u4", "uint16": "<u2",
}
_ML_DTYPES = {"bfloat16": "bfloat16", "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2"}


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # older installs: TF ships the same generated bindings
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError as exc:
            from mobile_opt.errors import DependencyError

            raise DependencyError(
                "Reading .tflite files needs the TFLite schema bindings. "
                "Install them with: pip install ai-edge-litert"
            ) from exc
    return schema


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point), per tensor or per channel."""

    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale.tolist(),
            "zero_point": self.zero_point.tolist(),
            "quantized_dimension": self.quantized_dimension,
        }


@dataclass(frozen=True)
class DimensionMetadata:
    """One dimension of a sparse tensor: "DENSE" (dense_size) or "SPARSE_CSR" (segments/indices)."""

    format: str
    dense_size: int
    array_segments: np.ndarray | None
    array_indices: np.ndarray | None


@dataclass(frozen=True)
class SparsityInfo:
    """TFLite sparse-tensor layout (traversal order, block map, per-dimension metadata)."""

    traversal_order: tuple[int, ...]
    block_map: tuple[int, ...]
    dim_metadata: tuple[DimensionMetadata, ...]


@dataclass(frozen=True)
class BufferInfo:
    """Where a buffer's bytes lie in the file: absolute `offset`, `size` bytes; `external` when
    stored after the flatbuffer (offset/size fields) instead of inline."""

    index: int
    offset: int
    size: int
    external: bool


@dataclass(frozen=True)
class Tensor:
    """A tensor of a subgraph. `data()` decodes constant weights; `nbytes` is the bytes stored."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    buffer_index: int
    is_constant: bool
    quantization: Quantization | None
    sparsity: SparsityInfo | None
    is_variable: bool
    nbytes: int
    _raw: bytes = field(default=b"", repr=False, compare=False)
    _buffer: BufferInfo | None = field(default=None, repr=False, compare=False)

    @property
    def num_elements(self) -> int:
        """Number of elements of the (dense) shape; 1 for a scalar."""
        return math.prod(self.shape)

    @property
    def bits_per_element(self) -> int | None:
        """Storage bits per element (4 for int4), None for string/resource/variant."""
        return _TYPE_BITS[self.dtype]

    def data(self) -> np.ndarray | None:
        """Returns the constant values (read-only), or None for a non-constant tensor.

        Dense tensors come back in `shape`; int4/uint4 (two per byte, low nibble first) and
        int2 are unpacked to int8/uint8; sparse tensors return their stored values (1-D).

        Returns:
            A numpy array, or None when the tensor has no constant data.

        Raises:
            ModelFormatError: the type has no numeric representation (string, resource, variant).
        """
        if not self.is_constant or self._buffer is None:
            return None
        buf = self._buffer
        raw = np.frombuffer(self._raw, dtype=np.uint8, count=buf.size, offset=buf.offset)
        n = buf.size if self.sparsity is not None else self.num_elements
        if self.dtype in ("int4", "uint4", "int2"):
            values = _unpack_subbyte(raw, self.dtype, n, self.sparsity is not None)
        elif self.dtype in _NUMPY_DTYPES or self.dtype in _ML_DTYPES:
            dtype = _numpy_dtype(self.dtype)
            values = raw.view(dtype) if raw.size % dtype.itemsize == 0 else None
            if values is None:
                raise ModelFormatError(
                    f"Tensor {self.index} {self.name!r}: its buffer of {buf.size} bytes is not a "
                    f"whole number of {self.dtype} values. The file is damaged; re-convert the model."
                )
        else:
            raise ModelFormatError(
                f"Tensor {self.index} {self.name!r} has type {self.dtype}, which has no numeric "
                "representation; only numeric constant tensors can be decoded."
            )
        if self.sparsity is not None:
            return values
        return values.reshape(self.shape)


def _numpy_dtype(dtype: str) -> np.dtype:
    if dtype in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[dtype])
    import ml_dtypes  # a TensorFlow dependency; needed only for bfloat16 / float8 weights

    return np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))


def _unpack_subbyte(raw: np.ndarray, dtype: str, n: int, sparse: bool) -> np.ndarray:
    per_byte = 4 if dtype == "int2" else 2
    if sparse:
        n = raw.size * per_byte
    if raw.size == n:  # stored one value per byte (unpacked layout)
        vals = raw.astype(np.uint8)
    else:
        bits = 8 // per_byte
        shifts = np.arange(per_byte, dtype=np.uint8) * bits  # low bits first
        vals = ((raw[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:n].astype(np.uint8)
    if dtype == "uint4":
        return vals
    bits = 8 // per_byte
    half = 1 << (bits - 1)
    out = ((vals.astype(np.int16) & ((1 << bits) - 1)) ^ half) - half
    return out.astype(np.int8)


@dataclass(frozen=True)
class Operator:
    """An operator: `opcode` is the builtin name ("CONV_2D") or "CUSTOM:<code>"; `inputs` may hold
    -1 for an omitted optional input; `options` are the builtin options as a plain dict."""

    index: int
    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]


@dataclass(frozen=True)
class Subgraph:
    """A subgraph (index 0 is the main graph; tf.cond / while bodies are further subgraphs)."""

    name: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class SignatureDef:
    """A named entry point: input/output names -> tensor indices in subgraph `subgraph_index`."""

    signature_key: str
    subgraph_index: int
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass(frozen=True)
class MetadataEntry:
    """A named metadata buffer (e.g. "min_runtime_version")."""

    name: str
    buffer_index: int


@dataclass(frozen=True)
class TFLiteModel:
    """A parsed .tflite file. `buffers_info[i]` says where buffer i's bytes are in the file."""

    version: int
    description: str
    subgraphs: tuple[Subgraph, ...]
    operator_codes: tuple[str, ...]
    buffers_info: tuple[BufferInfo, ...]
    metadata: tuple[MetadataEntry, ...]
    signature_defs: tuple[SignatureDef, ...]
    file_size: int
    source: str = ""
    _raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def raw_bytes(self) -> bytes:
        """The whole file's bytes."""
        return self._raw


class _Reader:
    """Bounds-checked walk over the generated accessors of one file."""

    def __init__(self, raw: bytes, label: str):
        self.raw = raw
        self.size = len(raw)
        self.label = label
        self.schema = _schema()
        # Every vector element, table and string byte visited is charged here. A valid file
        # stores each object once, so the total cannot exceed its size; aliased offsets that
        # would make the walk quadratic exhaust the budget instead.
        self.budget = 2 * self.size + 4096
        self.type_names = _enum_names(self.schema.TensorType)
        self.op_names = _enum_names(self.schema.BuiltinOperator)
        self.options_names = _enum_names(self.schema.BuiltinOptions)
        self.options2_names = _enum_names(self.schema.BuiltinOptions2)
        self.enum_fields = {
            "padding": _enum_names(self.schema.Padding),
            "fused_activation_function": _enum_names(self.schema.ActivationFunctionType),
            "weights_format": _enum_names(self.schema.FullyConnectedOptionsWeightsFormat),
            "kernel_type": _enum_names(self.schema.LSTMKernelType),
            "combiner": _enum_names(self.schema.CombinerType),
        }

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(
            f"{self.label} is not a valid .tflite model: {what}. "
            "Re-convert the model, or check that the file was copied completely."
        )

    def charge(self, units: int, what: str) -> None:
        self.budget -= units
        if self.budget < 0:
            raise self.fail(f"{what} declares more content than the file holds (overlapping or "
                            "aliased structures)")

    def length(self, n: int, elem_bytes: int, what: str) -> int:
        if n < 0 or n * elem_bytes > self.size:
            raise self.fail(f"{what} declares {n} elements, more than a {self.size}-byte file holds")
        self.charge(n * elem_bytes, what)
        return n

    def ints(self, obj, name: str, what: str) -> tuple[int, ...]:
        if getattr(obj, f"{name}IsNone")():
            return ()
        n = self.length(getattr(obj, f"{name}Length")(), 4, what)
        arr = getattr(obj, f"{name}AsNumpy")()
        if not isinstance(arr, np.ndarray) or arr.size != n:
            raise self.fail(f"{what} lies outside the file")
        return tuple(int(v) for v in arr)

    def array(self, obj, name: str, what: str, elem_bytes: int) -> np.ndarray:
        if getattr(obj, f"{name}IsNone")():
            return np.zeros(0)
        n = self.length(getattr(obj, f"{name}Length")(), elem_bytes, what)
        arr = getattr(obj, f"{name}AsNumpy")()
        if not isinstance(arr, np.ndarray) or arr.size != n:
            raise self.fail(f"{what} lies outside the file")
        return arr.copy()

    def string(self, value: bytes | None, what: str) -> str:
        if value is None:
            return ""
        self.charge(len(value), what)
        return value.decode("utf-8", errors="replace")

    def model(self, source_label: str) -> TFLiteModel:
        s = self.schema
        if self.size < 8:
            raise self.fail(f"it is {self.size} bytes long, too short for a flatbuffer header")
        if self.raw[4:8] != _IDENTIFIER:
            raise self.fail(f"file identifier is {self.raw[4:8]!r} at offset 4, expected {_IDENTIFIER!r}")
        root = struct.unpack_from("<I", self.raw, 0)[0]
        if root + 4 > self.size:
            raise self.fail(f"root table offset {root} is beyond the end of the file")
        m = s.Model.GetRootAs(self.raw, 0)
        self.charge(4, "model")
        op_codes = tuple(self.opcode(m.OperatorCodes(i), i)
                         for i in range(self.length(m.OperatorCodesLength(), 4, "operator_codes")))
        buffers = tuple(self.buffer(m.Buffers(i), i)
                        for i in range(self.length(m.BuffersLength(), 4, "buffers")))
        subgraphs = tuple(self.subgraph(m.Subgraphs(i), i, op_codes, buffers)
                          for i in range(self.length(m.SubgraphsLength(), 4, "subgraphs")))
        if not subgraphs:
            raise self.fail("it has no subgraphs")
        metadata = []
        for i in range(self.length(m.MetadataLength(), 4, "metadata")):
            md = self.table(m.Metadata(i), f"metadata {i}")
            entry = MetadataEntry(self.string(md.Name(), "metadata name"), int(md.Buffer()))
            if not 0 <= entry.buffer_index < len(buffers):
                raise self.fail(f"metadata {entry.name!r} names buffer {entry.buffer_index}, "
                                f"but there are {len(buffers)} buffers")
            metadata.append(entry)
        signatures = []
        for i in range(self.length(m.SignatureDefsLength(), 4, "signature_defs")):
            sd = self.table(m.SignatureDefs(i), f"signature {i}")
            sub = int(sd.SubgraphIndex())
            if not 0 <= sub < len(subgraphs):
                raise self.fail(f"signature {i} names subgraph {sub}, but there are {len(subgraphs)}")
            signatures.append(SignatureDef(
                self.string(sd.SignatureKey(), "signature key"), sub,
                self.tensor_map(sd, "Inputs", len(subgraphs[sub].tensors)),
                self.tensor_map(sd, "Outputs", len(subgraphs[sub].tensors)),
            ))
        return TFLiteModel(
            version=int(m.Version()),
            description=self.string(m.Description(), "description"),
            subgraphs=subgraphs,
            operator_codes=op_codes,
            buffers_info=buffers,
            metadata=tuple(metadata),
            signature_defs=tuple(signatures),
            file_size=self.size,
            source=source_label,
            _raw=self.raw,
        )

    def table(self, obj, what: str):
        if obj is None:
            raise self.fail(f"{what} is missing")
        self.charge(4, what)
        return obj

    def tensor_map(self, sd, name: str, n_tensors: int) -> dict[str, int]:
        out = {}
        for i in range(self.length(getattr(sd, f"{name}Length")(), 4, f"signature {name.lower()}")):
            tm = self.table(getattr(sd, name)(i), "signature tensor map")
            idx = int(tm.TensorIndex())
            if not 0 <= idx < n_tensors:
                raise self.fail(f"signature tensor {idx} is out of range (subgraph has {n_tensors})")
            out[self.string(tm.Name(), "signature name")] = idx
        return out

    def opcode(self, oc, i: int) -> str:
        oc = self.table(oc, f"operator code {i}")
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = self.op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            return f"CUSTOM:{self.string(oc.CustomCode(), 'custom code')}"
        return name

    def buffer(self, b, i: int) -> BufferInfo:
        b = self.table(b, f"buffer {i}")
        inline = inline_vector(b, 4)  # field 0: inline `data` vector
        if inline is not None:
            start, n = inline
            if start + n > self.size:
                raise self.fail(f"buffer {i} declares {n} bytes at offset {start}, past the end "
                                f"of the {self.size}-byte file")
            if n:
                return BufferInfo(i, start, n, external=False)
        offset, size = int(b.Offset()), int(b.Size())
        if offset > 1:  # schema: offset > 1 means the data lies outside the flatbuffer
            if offset + size > self.size:
                raise self.fail(f"buffer {i} declares {size} bytes at offset {offset}, past the "
                                f"end of the {self.size}-byte file")
            return BufferInfo(i, offset, size, external=True)
        return BufferInfo(i, 0, 0, external=False)

    def subgraph(self, sg, i: int, op_codes, buffers) -> Subgraph:
        sg = self.table(sg, f"subgraph {i}")
        tensors = tuple(self.tensor(sg.Tensors(j), j, buffers)
                        for j in range(self.length(sg.TensorsLength(), 4, f"subgraph {i} tensors")))
        n = len(tensors)
        operators = tuple(self.operator(sg.Operators(j), j, op_codes, n)
                          for j in range(self.length(sg.OperatorsLength(), 4, f"subgraph {i} operators")))
        inputs = self.ints(sg, "Inputs", f"subgraph {i} inputs")
        outputs = self.ints(sg, "Outputs", f"subgraph {i} outputs")
        for idx in inputs + outputs:
            if not 0 <= idx < n:
                raise self.fail(f"subgraph {i} input/output tensor {idx} is out of range ({n} tensors)")
        return Subgraph(self.string(sg.Name(), "subgraph name"), tensors, operators, inputs, outputs)

    def tensor(self, t, j: int, buffers) -> Tensor:
        t = self.table(t, f"tensor {j}")
        name = self.string(t.Name(), "tensor name")
        code = int(t.Type())
        dtype = self.type_names.get(code)
        if dtype is None:
            raise self.fail(f"tensor {j} {name!r} has tensor type code {code}, unknown to this "
                            "schema (upgrade ai-edge-litert if the model is newer)")
        dtype = dtype.lower()
        shape = self.ints(t, "Shape", f"tensor {j} shape")
        signature = self.ints(t, "ShapeSignature", f"tensor {j} shape_signature") or None
        b_idx = int(t.Buffer())
        if not 0 <= b_idx < max(len(buffers), 1):
            raise self.fail(f"tensor {j} {name!r} names buffer {b_idx}, but there are {len(buffers)}")
        buf = buffers[b_idx] if buffers else None
        is_constant = buf is not None and buf.size > 0
        sparsity = self.sparsity(t.Sparsity(), j) if t.Sparsity() is not None else None
        if is_constant:
            self.check_size(j, name, dtype, shape, buf, sparsity is not None)
        return Tensor(
            index=j, name=name, dtype=dtype, shape=shape, shape_signature=signature,
            buffer_index=b_idx, is_constant=is_constant,
            quantization=self.quantization(t.Quantization(), j), sparsity=sparsity,
            is_variable=bool(t.IsVariable()), nbytes=buf.size if is_constant else 0,
            _raw=self.raw, _buffer=buf if is_constant else None,
        )

    def check_size(self, j, name, dtype, shape, buf: BufferInfo, sparse: bool) -> None:
        bits = _TYPE_BITS[dtype]
        if bits is None or sparse:
            return
        if any(d < 0 for d in shape):
            raise self.fail(f"constant tensor {j} {name!r} has unknown dimensions {shape}")
        n = math.prod(shape)  # Python ints: a huge declared shape cannot overflow
        expected = {(n * bits + 7) // 8}
        if bits < 8:
            expected.add(n)  # sub-byte types may also be stored one value per byte
        if buf.size not in expected:
            raise self.fail(f"constant tensor {j} {name!r} of shape {shape} ({dtype}) needs "
                            f"{min(expected)} bytes but buffer {buf.index} holds {buf.size}")

    def quantization(self, q, j: int) -> Quantization | None:
        if q is None:
            return None
        self.charge(4, "quantization")
        scale = self.array(q, "Scale", f"tensor {j} scale", 4).astype(np.float32)
        zero_point = self.array(q, "ZeroPoint", f"tensor {j} zero_point", 8).astype(np.int64)
        if scale.size == 0 and zero_point.size == 0:
            return None
        return Quantization(scale, zero_point, int(q.QuantizedDimension()))

    def sparsity(self, sp, j: int) -> SparsityInfo:
        s = self.schema
        self.charge(4, "sparsity")
        dims = []
        for k in range(self.length(sp.DimMetadataLength(), 4, f"tensor {j} dim_metadata")):
            dm = self.table(sp.DimMetadata(k), f"tensor {j} dim_metadata {k}")
            fmt = "SPARSE_CSR" if dm.Format() == s.DimensionType.SPARSE_CSR else "DENSE"
            dims.append(DimensionMetadata(
                fmt, int(dm.DenseSize()),
                self.index_vector(dm.ArraySegmentsType(), dm.ArraySegments(), j),
                self.index_vector(dm.ArrayIndicesType(), dm.ArrayIndices(), j),
            ))
        return SparsityInfo(
            self.ints(sp, "TraversalOrder", f"tensor {j} traversal_order"),
            self.ints(sp, "BlockMap", f"tensor {j} block_map"),
            tuple(dims),
        )

    def index_vector(self, kind: int, table, j: int) -> np.ndarray | None:
        s = self.schema
        classes = {s.SparseIndexVector.Int32Vector: (s.Int32Vector, 4),
                   s.SparseIndexVector.Uint16Vector: (s.Uint16Vector, 2),
                   s.SparseIndexVector.Uint8Vector: (s.Uint8Vector, 1)}
        if table is None or kind not in classes:
            return None
        cls, width = classes[kind]
        vec = cls()
        vec.Init(table.Bytes, table.Pos)
        return self.array(vec, "Values", f"tensor {j} sparse indices", width)

    def operator(self, op, j: int, op_codes, n_tensors: int) -> Operator:
        op = self.table(op, f"operator {j}")
        code_idx = int(op.OpcodeIndex())
        if not 0 <= code_idx < len(op_codes):
            raise self.fail(f"operator {j} uses opcode {code_idx}, but there are {len(op_codes)}")
        inputs = self.ints(op, "Inputs", f"operator {j} inputs")
        outputs = self.ints(op, "Outputs", f"operator {j} outputs")
        for idx in inputs + outputs:
            if not -1 <= idx < n_tensors:
                raise self.fail(f"operator {j} ({op_codes[code_idx]}) refers to tensor {idx}; "
                                f"the subgraph has {n_tensors}")
        options = self.options(op.BuiltinOptionsType(), op.BuiltinOptions(), self.options_names)
        options.update(self.options(op.BuiltinOptions2Type(), op.BuiltinOptions2(), self.options2_names))
        return Operator(j, op_codes[code_idx], inputs, outputs, options)

    def options(self, kind: int, table, names: dict[int, str]) -> dict[str, Any]:
        """Reads the scalar and numeric-vector fields of a builtin-options table generically."""
        cls = getattr(self.schema, names.get(kind, ""), None) if kind else None
        if table is None or cls is None:
            return {}
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
        self.charge(4, "operator options")
        members = vars(cls)
        out: dict[str, Any] = {}
        for attr, fn in members.items():
            if (attr.startswith(("_", "Init", "GetRootAs")) or not callable(fn)
                    or attr.endswith(("Length", "AsNumpy", "IsNone", "BufferHasIdentifier"))):
                continue
            # flatc capitalises each snake_case word: DilationWFactor <- dilation_w_factor.
            key = re.sub(r"(?<!^)(?=[A-Z])", "_", attr).lower()
            if f"{attr}AsNumpy" in members:
                n = self.length(getattr(obj, f"{attr}Length")(), 4, f"option {key}")
                arr = getattr(obj, f"{attr}AsNumpy")()
                if isinstance(arr, np.ndarray) and arr.size == n:
                    out[key] = arr.tolist()
                continue
            if f"{attr}Length" in members or fn.__code__.co_argcount != 1:
                continue  # vectors of tables: not needed for size/FLOPs analysis
            value = fn(obj)
            if isinstance(value, bytes):
                value = self.string(value, f"option {key}")
            elif not isinstance(value, (bool, int, float)):
                continue  # nested tables
            if key in self.enum_fields and isinstance(value, int):
                value = self.enum_fields[key].get(value, value)
            out[key] = value
        return out


def _read_source(source: str | Path | bytes | bytearray | memoryview) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            "load_tflite expects a path or the file's bytes. "
            f"Received: source={type(source).__name__}"
        )
    path = Path(source)
    if not path.exists():
        raise InputError(f"Model file not found. Received: source={str(path)!r}. Check the path.")
    if path.is_dir():
        raise InputError(
            f"Expected a .tflite file, got a directory. Received: source={str(path)!r}. "
            "Pass the .tflite file inside it."
        )
    if not path.is_file():  # reading a named pipe or a device would block or never end
        raise InputError(
            f"{str(path)!r} is not a regular file (a named pipe, socket or device). Received: "
            f"source={str(path)!r}. Pass the .tflite file itself (copy a piped model to a file first)."
        )
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InputError(f"Cannot read model file {str(path)!r}: {exc.strerror or exc}.") from exc


def load_tflite(source: str | Path | bytes) -> TFLiteModel:
    """Parses a .tflite flatbuffer into frozen dataclasses.

    Args:
        source: path to a .tflite file, or the file's bytes.

    Returns:
        A `TFLiteModel` (subgraphs, tensors with lazily decoded weights, operators, buffers).

    Raises:
        InputError: the path does not exist, is a directory or cannot be read.
        ModelFormatError: the bytes are not a valid .tflite model (wrong identifier, truncated,
            offsets outside the file, unknown tensor type ...); the message names the file.

    Example:
        Count the weights of a model:

        >>> model = load_tflite("model.tflite")            # doctest: +SKIP
        >>> sum(t.num_elements for t in model.subgraphs[0].tensors if t.is_constant)  # doctest: +SKIP
    """
    raw, label = _read_source(source)
    reader = _Reader(raw, label)
    try:
        return reader.model(label)
    except ModelFormatError:
        raise
    except _GARBAGE_ERRORS as exc:
        # The generated accessors follow offsets blindly; garbage shows up as these errors.
        raise reader.fail(f"a structure lies outside the file or is corrupt ({exc})") from exc
    except RecursionError as exc:  # pragma: no cover - the schema walk is not recursive
        raise reader.fail("structures are nested too deeply") from exc
