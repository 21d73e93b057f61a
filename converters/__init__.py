"""Keras -> TFLite conversion, .tflite parsing, size and FLOPs analysis, size budgets.

Public names are imported lazily (TensorFlow is only loaded by what needs it).
Layering: converters may import `mobile_opt.errors` and `mobile_opt._tf`
(leaf modules), never the rest of `mobile_opt`.
"""

from mobile_opt._lazy import lazy_exports

# name -> submodule of converters that defines it
_EXPORTS: dict[str, str] = {
    "TFLiteModel": "tflite_model",
    "Subgraph": "tflite_model",
    "Tensor": "tflite_model",
    "Operator": "tflite_model",
    "Quantization": "tflite_model",
    "SparsityInfo": "tflite_model",
    "BufferInfo": "tflite_model",
    "load_tflite": "tflite_model",
    "QUANTIZATION_MODES": "conversion",
    "convert": "conversion",
    "convert_to_file": "conversion",
    "is_qat_model": "conversion",
    "IntegerWeights": "weight_bits",
    "load_keras_model": "conversion",
    "make_interpreter": "interpreter",
    "check_runs": "interpreter",
    "EvaluationResult": "evaluation",
    "evaluate": "evaluation",
    "paired_drop": "evaluation",
    "FlopsReport": "flops",
    "LayerFlops": "flops",
    "count_flops": "flops",
    "Budget": "budget",
    "BudgetReport": "budget",
    "BudgetResult": "budget",
    "check_budgets": "budget",
    "load_budgets": "budget",
    "parse_count": "budget",
    "parse_size": "budget",
    "HuffmanSize": "huffman",
    "SparseSize": "sparse",
    "SizeReport": "size",
    "TensorSize": "size",
    "OpTypeSize": "size",
    "SubgraphSize": "size",
    "analyze": "size",
    "shorten_names": "names",
    "SizeDiff": "size_diff",
    "diff": "size_diff",
    "TensorDiff": "size_diff",
    "to_markdown": "report",
    "plot_size": "plot",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
