"""How a Keras 3 layer graph is checked and rebuilt in tf_keras (see `keras3_bridge`).

Reads Keras 3's `get_config()` format: `batch_shape`, `DTypePolicy` dicts,
`{"module", "class_name", "config"}` initializers/regularizers/constraints, and
functional `inbound_nodes` whose arguments are `__keras_tensor__` references
(`keras_history = [layer, node, tensor]`), including recorded `keras.ops` calls.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from mobile_opt import _tf
from mobile_opt.errors import UnsupportedModelError

SUPPORTED_LAYERS = frozenset(
    """InputLayer Dense Conv1D Conv2D DepthwiseConv2D SeparableConv2D BatchNormalization
    LayerNormalization Activation ReLU Softmax MaxPooling1D MaxPooling2D AveragePooling1D
    AveragePooling2D GlobalMaxPooling1D GlobalMaxPooling2D GlobalAveragePooling1D
    GlobalAveragePooling2D Add Multiply Concatenate Reshape Flatten Permute Dropout
    ZeroPadding2D Rescaling Normalization UpSampling2D Embedding""".split()
)
# Same name, same function in both Keras (max |difference| 0 on [-8, 8], see tests).
_SAME_ACTIVATIONS = frozenset(
    """linear relu relu6 sigmoid tanh softmax log_softmax swish silu elu selu gelu softplus
    softsign exponential leaky_relu mish""".split()
)
# Keras 3 activations rebuilt from tf_keras layers: name -> multiplies by x afterwards.
_HARD_ACTIVATIONS = {"hard_sigmoid": False, "hard_silu": True, "hard_swish": True}
# Keras 3 settings tf_keras lacks, and the value at which dropping them changes nothing.
_NEUTRAL = {"quantization_config": None, "lora_rank": None, "lora_alpha": None, "rms_scaling": False,
            "synchronized": False, "optional": False, "seed": None, "build_config": None}
# Element-wise keras.ops recorded in functional graphs (MobileNetV3's `x + 3.0`, `x * (1/6)`).
_ARITHMETIC_OPS = frozenset({"Add", "Subtract", "Multiply", "Divide", "TrueDivide"})
_FIX = ("Rebuild the model from the layers listed in mobile_opt's README (Keras 3 Sequential or "
        "functional API), or build it with `import tf_keras as keras`.")


def _functional_class():
    from keras.src.models.functional import Functional  # the class keras.Model(inputs, outputs) returns

    return Functional


def check_structure(model: Any) -> None:
    """Raises `UnsupportedModelError` naming every layer, op and setting the rebuild cannot translate."""
    import keras

    from converters.keras3_bridge import is_keras3_model

    if not is_keras3_model(model):
        raise UnsupportedModelError(
            f"Expected a Keras 3 model. Received: model of type {type(model).__module__}.{type(model).__name__}."
        )
    if type(model) not in (keras.Sequential, _functional_class()):
        raise UnsupportedModelError(
            f"Model {model.name!r} is a subclassed Keras 3 model ({type(model).__name__}); only Sequential and "
            "functional models have a config that can be rebuilt in tf_keras for TF-MOT. Rebuild it with "
            "`keras.Sequential([...])` or `keras.Model(inputs, outputs)`."
        )
    if not model.built or not model.inputs:
        raise UnsupportedModelError(
            f"Model {model.name!r} is not built; give it an input shape (e.g. `keras.Input((28, 28))`) "
            "or call it once on data."
        )
    problems, offenders = [], set()
    for op in getattr(model, "operations", model.layers):  # Sequential: layers only
        found = _op_problems(op) if _is_op(op) else _layer_problems(op)
        problems += found
        offenders.update([op.name] if found else [])
    if problems:
        raise UnsupportedModelError(
            f"Model {model.name!r} cannot be bridged to tf_keras for TF-MOT; "
            f"{len(offenders)} layer(s) are outside what mobile-opt translates: " + "; ".join(problems)
            + ". " + _FIX
        )


def _is_op(op: Any) -> bool:
    """A `keras.ops` call recorded in a functional graph (`x + 3.0` on a KerasTensor), not a layer."""
    return type(op).__module__.startswith("keras.src.ops.")


def _op_problems(op: Any) -> list[str]:
    if type(op).__name__ in _ARITHMETIC_OPS and type(op).__module__ == "keras.src.ops.numpy":
        return []
    return [f"{op.name!r} is the Keras 3 op keras.ops.{type(op).__name__} (only +, -, *, / are translated); "
            "use a layer instead"]


def _layer_problems(layer: Any) -> list[str]:
    import keras

    kind = type(layer).__name__
    where = f"{layer.name!r} ({kind})"
    if isinstance(layer, keras.Model):
        return [f"{where} is a nested model (flatten it into the outer model)"]
    if kind not in SUPPORTED_LAYERS or not type(layer).__module__.startswith("keras.src.layers"):
        custom = "" if type(layer).__module__.startswith("keras.") else " (a custom layer)"
        return [f"{where}{custom} is not a supported layer type"]
    config = layer.get_config()
    problems = []
    activation = config.get("activation")
    if activation is not None and (not isinstance(activation, str)
                                   or activation not in _SAME_ACTIVATIONS | _HARD_ACTIVATIONS.keys()):
        problems.append(f"{where} uses activation {activation!r} (use a built-in one by name)")
    dtype = config.get("dtype")
    policy = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if policy not in (None, "float32", "float16", "mixed_float16", "bfloat16", "mixed_bfloat16", "int32"):
        problems.append(f"{where} has dtype policy {policy!r}")
    if kind == "InputLayer":
        return problems
    accepted = _accepted_keys(kind)
    for key, value in config.items():
        if key in accepted or key == "activation" or key == "dtype":
            continue
        if key in _NEUTRAL and value == _NEUTRAL[key]:
            continue
        problems.append(f"{where} sets {key}={value!r}, which tf_keras has no counterpart for")
    return problems


@functools.cache
def _accepted_keys(kind: str) -> frozenset[str]:
    # The union over the class hierarchy: tf_keras' BatchNormalization passes `renorm` etc. to its base.
    cls = getattr(_tf.keras().layers, kind)
    params = {p for c in cls.__mro__ if "__init__" in vars(c)
              for p in inspect.signature(c.__init__).parameters if p not in ("self", "args", "kwargs")}
    return frozenset(params | {"name", "trainable", "dtype"})


# ---------------------------------------------------------------------- rebuilding


def _dtype(value: Any) -> Any:
    """Keras 3 DTypePolicy dict (or a plain name) -> the tf_keras dtype/policy name."""
    if isinstance(value, dict):
        return value.get("config", {}).get("name")
    return value


def _serialized(value: Any, module: str, where: str) -> Any:
    """A Keras 3 `{"module", "class_name", "config"}` initializer/regularizer/constraint in tf_keras."""
    if value is None or isinstance(value, str):
        return value
    keras = _tf.keras()
    getter = getattr(keras, module)
    cls = getattr(getter, value["class_name"], None)
    config = dict(value.get("config") or {})
    if cls is not None:  # drop Keras 3-only settings at their neutral value (e.g. input_axes=None)
        accepted = _init_parameters(cls)
        config = {k: v for k, v in config.items() if k in accepted or v is not None}
    try:
        return getter.deserialize({"class_name": value["class_name"], "config": config})
    except (ValueError, TypeError) as exc:
        raise UnsupportedModelError(f"Layer {where}: cannot translate {module[:-1]} {value!r}: {exc}. {_FIX}") from exc


@functools.cache
def _init_parameters(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__init__).parameters)


def _tf_layer_config(layer: Any) -> tuple[dict, str | None]:
    """The tf_keras config of one Keras 3 layer, and the hard activation to append (if any)."""
    config = layer.get_config()
    kind = type(layer).__name__
    accepted = _accepted_keys(kind)
    out: dict = {}
    hard = None
    for key, value in config.items():
        if key not in accepted:
            continue  # neutral Keras 3-only settings (checked in _layer_problems)
        if key == "dtype":
            value = _dtype(value)
        elif key.endswith("_initializer"):
            value = _serialized(value, "initializers", layer.name)
        elif key.endswith("_regularizer"):
            value = _serialized(value, "regularizers", layer.name)
        elif key.endswith("_constraint"):
            value = _serialized(value, "constraints", layer.name)
        elif key == "activation" and value in _HARD_ACTIVATIONS:
            hard, value = value, "linear"
        elif isinstance(value, list) and key in ("padding", "kernel_size", "strides", "pool_size",
                                                   "dilation_rate", "size", "target_shape", "dims", "axis"):
            value = _tuples(value)
        out[key] = value
    return out, hard


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _hard_activation(tensor: Any, name: str, kind: str, *, standalone: bool) -> Any:
    """Keras 3's hard_sigmoid = relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1), from tf_keras layers."""
    layers = _tf.keras().layers
    multiply = _HARD_ACTIVATIONS[kind]
    base = name if standalone else f"{name}_{kind}"
    gate = layers.Rescaling(1 / 6, offset=0.5, name=f"{base}_scale")(tensor)
    gate = layers.ReLU(max_value=1.0, name=base if standalone and not multiply else f"{base}_gate")(gate)
    if not multiply:
        return gate
    return layers.Multiply(name=base)([tensor, gate])


def rebuild(model: Any) -> Any:
    """The tf_keras functional model of a checked Keras 3 model (weights not yet copied).

    A Sequential model becomes functional too: the hard activations add layers a
    Sequential could not hold (x * gate). Layer names are kept.
    """
    import keras as keras3

    keras = _tf.keras()
    config = model.get_config()
    entries = config["layers"]
    by_name = {op.name: op for op in getattr(model, "operations", model.layers)}
    tensors: dict[tuple, Any] = {}
    if isinstance(model, keras3.Sequential):
        inputs = [_input(keras, entries[0]["config"]) if entries and entries[0]["class_name"] == "InputLayer"
                  else keras.Input(batch_shape=tuple(model.inputs[0].shape), name=f"{model.name}_input")]
        x = inputs[0]
        for layer in model.layers:
            if type(layer).__name__ != "InputLayer":
                x = _apply(keras, layer, [x], {})
        outputs: Any = x
    else:
        for entry in entries:
            name = entry["config"]["name"] if entry["class_name"] == "InputLayer" else entry["name"]
            if entry["class_name"] == "InputLayer":
                tensors[(name, 0, 0)] = _input(keras, entry["config"])
                continue
            for node_index, node in enumerate(entry.get("inbound_nodes", [])):
                args = _resolve(node.get("args", []), tensors)
                kwargs = _resolve(node.get("kwargs", {}), tensors)
                result = _apply(keras, by_name[name], args, kwargs)
                for i, t in enumerate(result if isinstance(result, (list, tuple)) else [result]):
                    tensors[(name, node_index, i)] = t
        inputs = [tensors[tuple(k)] for k in _history_list(config["input_layers"])]
        outputs = [tensors[tuple(k)] for k in _history_list(config["output_layers"])]
        inputs = inputs[0] if len(inputs) == 1 else inputs
        outputs = outputs[0] if len(outputs) == 1 else outputs
    return keras.Model(inputs, outputs, name=model.name)


def _history_list(value: list) -> list:
    """`["layer", 0, 0]` (one tensor) or a list of them."""
    return [value] if value and isinstance(value[0], str) else list(value)


def _input(keras: Any, config: dict) -> Any:
    return keras.Input(batch_shape=tuple(config["batch_shape"]), dtype=config.get("dtype", "float32"),
                       sparse=config.get("sparse", False), ragged=config.get("ragged", False),
                       name=config["name"])


def _resolve(value: Any, tensors: dict) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return tensors[tuple(value["config"]["keras_history"])]
    if isinstance(value, dict):
        return {k: _resolve(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(v, tensors) for v in value]
    return value


def _arithmetic(keras: Any, op: Any, args: list) -> Any:
    """`a (+-*/) b` with tensors and at most one Python number, in tf_keras layers.

    With a number, `Rescaling(scale, offset)` computes x * scale + offset, exactly the op.
    """
    kind = type(op).__name__
    numbers = [a for a in args if isinstance(a, (int, float))]
    tensors = [a for a in args if not isinstance(a, (int, float))]
    if len(args) != 2 or not tensors:
        raise UnsupportedModelError(f"Op {op.name!r} ({kind}) has arguments mobile-opt cannot translate. {_FIX}")
    if not numbers:
        cls = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply"}.get(kind)
        if cls is None:
            raise UnsupportedModelError(f"Op {op.name!r}: tensor / tensor has no tf_keras layer. {_FIX}")
        return getattr(keras.layers, cls)(name=op.name)(tensors)
    c, number_first = float(numbers[0]), isinstance(args[0], (int, float))
    if kind in ("Divide", "TrueDivide") and number_first:
        raise UnsupportedModelError(f"Op {op.name!r}: number / tensor has no tf_keras layer. {_FIX}")
    scale, offset = {
        "Add": (1.0, c),
        "Subtract": (-1.0, c) if number_first else (1.0, -c),
        "Multiply": (c, 0.0),
        "Divide": (1.0 / c, 0.0),
        "TrueDivide": (1.0 / c, 0.0),
    }[kind]
    return keras.layers.Rescaling(scale, offset=offset, name=op.name)(tensors[0])


def _apply(keras: Any, layer: Any, args: list, kwargs: dict) -> Any:
    if _is_op(layer):
        return _arithmetic(keras, layer, args)
    kind = type(layer).__name__
    config, hard = _tf_layer_config(layer)
    if kind == "Activation" and hard is not None:
        return _hard_activation(args[0], layer.name, hard, standalone=True)
    tf_layer = getattr(keras.layers, kind).from_config(config)
    out = tf_layer(*args, **kwargs)
    if hard is not None:
        out = _hard_activation(out, layer.name, hard, standalone=False)
    return out


def copy_weights(model: Any, tf_model: Any) -> None:
    """Sets each rebuilt layer's weights to the Keras 3 layer's (same names, same order)."""
    for layer in model.layers:
        values = layer.get_weights()
        if not values:
            continue
        target = tf_model.get_layer(layer.name)
        have = [tuple(w.shape) for w in target.get_weights()]
        if have != [v.shape for v in values]:
            raise UnsupportedModelError(
                f"Layer {layer.name!r} ({type(layer).__name__}): its weights have shapes "
                f"{[v.shape for v in values]} in Keras 3 but {have} when rebuilt in tf_keras. {_FIX}"
            )
        target.set_weights(values)
