"""Everything that reaches past TF-MOT's public API, in one place (written for TF-MOT 0.8.1).

- `experimental_cluster()`: the public `tfmot.clustering.keras.experimental` namespace does not
  import the `cluster` module, the one whose `cluster_weights` takes preserve_sparsity.
- `default_8bit_registry()`: `registry.supports(layer)` is the only way to learn, before QAT
  starts, which layers the default 8-bit scheme cannot quantize.
- `output_quantize_config()`: the default scheme's output-only config, for affine layers
  (Rescaling, Normalization) the registry has no entry for.
- `qat_uncovered()`: the registry alone rejects e.g. every BatchNormalization, yet
  `quantize_apply` folds Conv/DepthwiseConv + BN (+ ReLU) through the scheme's layout transform
  first; only running that transform, as `quantize_apply` does, says what is really left over.

tests/test_compat.py pins the version: after an upgrade, recheck both here.
"""

from __future__ import annotations

from mobile_opt import _tf

__all__ = ["WRITTEN_FOR", "default_8bit_registry", "experimental_cluster", "output_quantize_config", "qat_uncovered"]

WRITTEN_FOR = "0.8.1"


def experimental_cluster():
    """TF-MOT's `clustering.keras.experimental.cluster` module (`cluster_weights(..., preserve_sparsity=)`)."""
    _tf.tfmot()  # TF-MOT must be imported the quiet, legacy-Keras way first
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    return cluster


def default_8bit_registry():
    """A `Default8BitQuantizeRegistry`: `.supports(layer)` says whether default QAT can quantize it."""
    _tf.tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def output_quantize_config():
    """A `Default8BitOutputQuantizeConfig`: quantize a layer's output only, weights untouched."""
    _tf.tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs,
    )

    return default_8bit_quantize_configs.Default8BitOutputQuantizeConfig()


def qat_uncovered(model, annotated: dict) -> list[str]:
    """Layers default 8-bit `quantize_apply` would refuse when the layers named in `annotated`
    are annotated with the given configs (None: the registry's), the others left in float.

    Mirrors `quantize_apply`'s steps 2-4: the input layers join the map, the scheme's layout
    transform (Conv+BN folding) fills in configs, and a layer still without one must be
    supported by the registry.
    """
    _tf.tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_layout_transform,
    )

    registry = default_8bit_registry()
    # On a copy, as quantize_apply does: the transform calls the layers again, which would
    # add nodes to the caller's model (and change its config).
    model = _tf.keras().models.clone_model(model)
    layer_map = {name: {"quantize_config": config} for name, config in annotated.items()}
    for input_layer in model._input_layers:  # noqa: SLF001 - as quantize_apply does
        if any(node.outbound_layer.name in layer_map for node in input_layer._outbound_nodes):  # noqa: SLF001
            layer_map[input_layer.name] = {}
    transformed, layer_map = default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform().apply(
        model, layer_map)
    return [layer.name for layer in transformed.layers
            if layer.name in annotated and not layer_map.get(layer.name, {}).get("quantize_config")
            and not registry.supports(layer)]
