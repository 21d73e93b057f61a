"""Shorter tensor names in a .tflite file: the same model in fewer bytes.

The converter names a tensor after every TF op fused into it, each with the full name scope:
`model/block_7_expand_BN/FusedBatchNormV3;model/block_7_expand/Conv2D` (MobileNetV2's names
are kilobytes of its file). `shorten_names` keeps, of each `;`-part, the components between
the model's scope (the first component) and the TF op (the last), for parts of three or more
components, and drops repeated parts: `block_7_expand_BN;block_7_expand`. Every Keras layer
name a part held is still a whole component, so `mobile_opt.quantization`'s kernel matching
(a layer name between `^`, `/` or `;` and `/`, `;` or `$`) finds the same tensors; names that
come out alike get their tensor index as one more component (`predictions/2`).

Left as they are: the names of subgraph inputs and outputs (what callers feed and read by
name), signature keys and their TensorMap names and indices, subgraph names, metadata, and
every buffer: the rewritten model computes exactly what the original does.

Example:
    >>> small = shorten_names(Path("model.tflite").read_bytes())       # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter

from converters.tflite_model import _schema, load_tflite
from mobile_opt.errors import ModelFormatError

__all__ = ["shorten_names"]

log = logging.getLogger(__name__)


def _short(name: str) -> str:
    kept: list[str] = []
    for part in name.split(";"):
        parts = part.split("/")
        short = "/".join(parts[1:-1]) if len(parts) >= 3 else part
        if short and short not in kept:
            kept.append(short)
    return ";".join(kept)


def _decode(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else (name or "")


def shorten_names(tflite: bytes) -> bytes:
    """Rewrites a .tflite model with shorter tensor names (see the module docstring for the rule).

    Args:
        tflite: the model's bytes.

    Returns:
        The rewritten model's bytes; the original when no name gets shorter.

    Raises:
        ModelFormatError: not a valid .tflite model, or its buffers are stored after the
            flatbuffer (offset/size fields), which a rewrite would move; shorten the names
            before the converter writes buffers outside (`_experimental_use_buffer_offset`).

    Example:
        Ship the same model in fewer bytes:

        >>> raw = Path("model.tflite").read_bytes()                          # doctest: +SKIP
        >>> len(shorten_names(raw)) < len(raw)                                # doctest: +SKIP
        True
    """
    import flatbuffers

    parsed = load_tflite(tflite)  # validates the file and names it in errors
    if any(b.external for b in parsed.buffers_info):
        raise ModelFormatError(
            f"{parsed.source}: its buffers are stored after the flatbuffer (offset/size fields); "
            "shorten_names cannot move them. Convert without _experimental_use_buffer_offset."
        )
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytes(tflite), 0)
    renamed = 0
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        fixed = set(subgraph.inputs if subgraph.inputs is not None else ()) | set(
            subgraph.outputs if subgraph.outputs is not None else ())
        old = [_decode(t.name) for t in tensors]
        new = list(old)
        for i, name in enumerate(old):
            short = _short(name)
            if i not in fixed and len(short) < len(name):
                new[i] = short
        counts = Counter(new)
        for i, name in enumerate(new):
            if name != old[i] and counts[name] > 1:
                new[i] = f"{name}/{i}"  # the tensor index: unique, and no Keras-made layer name
        counts = Counter(new)
        for tensor, before, after in zip(tensors, old, new):
            if after != before and len(after) < len(before) and counts[after] == 1:
                tensor.name = after
                renamed += 1
    if not renamed:
        return bytes(tflite)
    builder = flatbuffers.Builder(len(tflite))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = bytes(builder.Output())
    log.debug("shortened %d tensor names: %d -> %d bytes", renamed, len(tflite), len(out))
    return out
