"""mobile-opt: Keras model → small, fast, measured on-device TFLite model.

Example:
    >>> from mobile_opt import Pipeline, prune, cluster, quantize
    >>> pipeline = Pipeline([prune(0.9, schedule="polynomial"), cluster(16), quantize("qat_int8")])
    >>> len(pipeline.stages)
    3

Names are imported on first use, so `import mobile_opt` does not load TensorFlow.
"""

# Imported first for its side effect: TF_USE_LEGACY_KERAS / quiet-log defaults must be in
# place before the user's own `import tensorflow`; it does not import TensorFlow itself.
from mobile_opt import _tf  # noqa: F401
from mobile_opt._lazy import lazy_exports
from mobile_opt._version import __version__
from mobile_opt.errors import MobileOptError

_EXPORTS = {
    "Pipeline": "pipeline",
    "PipelineResult": "pipeline",
    "FineTuning": "pipeline",
    "prune": "pruning",
    "prune_channels": "channel_pruning",
    "cluster": "clustering",
    "quantize": "quantization",
    "low_rank": "lowrank",
    "fold_batchnorm": "batchnorm",
    "distill": "distillation",
    "auto_optimize": "auto",
    "AutoResult": "auto",
    "AutoSettings": "auto",
    "LayerSelection": "layer_selection",
    "StageReport": "stage",
    "load_dataset": "datasets",
    "load_fashion_mnist": "datasets",
    "load_model": "models",
    "save_model": "models",
    "load_recipe": "recipe",
    "write_report": "report",
}

__all__ = sorted([*_EXPORTS, "MobileOptError", "__version__"])
__getattr__ = lazy_exports(__name__, _EXPORTS)
