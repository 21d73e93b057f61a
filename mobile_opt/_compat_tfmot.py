"""Everything that reaches past TF-MOT's public API, in one place (written for TF-MOT 0.8.1).

- `experimental_cluster()`: the public `tfmot.clustering.keras.experimental` namespace does not
  import the `cluster` module, the one whose `cluster_weights` takes preserve_sparsity.
- `default_8bit_registry()`: `registry.supports(layer)` is the only way to learn, before QAT
  starts, which layers the default 8-bit scheme cannot quantize.
- `output_quantize_config()`: the default scheme's output-only config, for affine layers
  (Rescaling, Normalization) the registry has no entry for.

tests/test_compat.py pins the version: after an upgrade, recheck both here.
"""

from __future__ import annotations

from mobile_opt import _tf

__all__ = ["WRITTEN_FOR", "default_8bit_registry", "experimental_cluster", "output_quantize_config"]

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
