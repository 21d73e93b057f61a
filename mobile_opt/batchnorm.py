"""Folding BatchNormalization into the layer before it, as a pipeline stage.

The TFLite converter folds every inference-mode BatchNormalization into the Conv/Dense
kernel before it: each output channel c is scaled by gamma_c / sqrt(var_c + eps). That
scaling happens *after* our stages, so 16 shared values become up to 16 different values
per channel in the .tflite, and the Deep Compression coding of a clustered layer pays for
them: on MobileNetV2 a layer clustered to 8 values shipped with 154 distinct int8 codes.
Folding first (the same arithmetic, in the Keras model) lets pruning, clustering and
quantization work on the weights that ship, so the file holds exactly the clusters.

Example:
    >>> fold_batchnorm().kind
    'fold_batchnorm'
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from mobile_opt import _tf
from mobile_opt.measure import kernel_stats
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, stage_builder

__all__ = ["FoldBatchNormStage", "fold_batchnorm", "fold_batchnorm_layers", "foldable_batchnorms"]

logger = logging.getLogger(__name__)

# Layers whose output channels are the last axis of their kernel (depthwise: in x multiplier).
_FOLDABLE = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Dense")
# Folding reorders float arithmetic only: outputs may differ by rounding, relative to their scale.
_TOLERANCE = 1e-4


def _inbound_names(entry: dict) -> list[str]:
    return [ref[0] for node in entry.get("inbound_nodes", []) for ref in node]


def _foldable_pairs(model, config: dict) -> tuple[dict[str, str], dict[str, str]]:
    """`({BN name: the layer it folds into}, {BN name: why it stays})`.

    A BN folds when it normalises the last axis, its input comes from one foldable layer
    with a linear activation (a ReLU before the BN would not commute), and that layer feeds
    nothing else, a model output included (its raw output is needed elsewhere otherwise).
    """
    entries = config["layers"]
    # Calls are counted in this model's config: a layer's `inbound_nodes` also holds its calls
    # in other models (a stripped pruning wrapper's, a clone's source).
    if "inbound_nodes" in (entries[0] if entries else {}):
        producer_of = {e["config"]["name"]: _inbound_names(e) for e in entries}
        calls = {e["config"]["name"]: len(e["inbound_nodes"]) for e in entries}
        outputs = [ref[0] for ref in config.get("output_layers", [])]
    else:  # Sequential: each layer takes the one before it, once
        names = [e["config"]["name"] for e in entries]
        producer_of = {n: [names[i - 1]] if i else [] for i, n in enumerate(names)}
        calls = dict.fromkeys(names, 1)
        outputs = names[-1:]
    consumers: dict[str, int] = {}
    for source in [s for sources in producer_of.values() for s in sources] + outputs:
        consumers[source] = consumers.get(source, 0) + 1
    layers = {layer.name: layer for layer in model.layers}
    pairs, left = {}, {}
    for name, sources in producer_of.items():
        layer = layers.get(name)
        if type(layer).__name__ != "BatchNormalization":
            continue
        axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
        producer = layers.get(sources[0]) if len(sources) == 1 else None
        kind = type(producer).__name__
        if calls[name] != 1 or producer is None:
            left[name] = "called more than once, or not on one layer's output"
        elif axis not in (-1, len(layer.input_shape) - 1):
            left[name] = f"normalises axis {layer.axis}, not the channels (last)"
        elif kind not in _FOLDABLE:
            left[name] = f"follows {producer.name!r} ({kind}), not one of {', '.join(_FOLDABLE)}"
        elif producer.get_config().get("activation") not in (None, "linear"):
            left[name] = f"follows {producer.name!r}'s {producer.get_config()['activation']} activation"
        elif calls[producer.name] != 1 or consumers.get(producer.name) != 1:
            left[name] = f"{producer.name!r} also feeds other layers or a model output"
        else:
            pairs[name] = producer.name
    return pairs, left


def _rewired(config: dict, pairs: dict[str, str]) -> dict:
    """The model config without the folded BNs, their consumers reading the producers instead."""
    config = copy.deepcopy(config)

    def swap(refs):
        if isinstance(refs, list):
            if refs and isinstance(refs[0], str) and refs[0] in pairs:
                return [pairs[refs[0]], *refs[1:]]
            return [swap(r) for r in refs]
        return refs

    producers = set(pairs.values())
    kept = []
    for entry in config["layers"]:
        if entry["config"]["name"] in pairs:
            continue
        entry.pop("build_config", None)  # shapes are rebuilt from the graph
        if entry["config"]["name"] in producers:
            entry["config"]["use_bias"] = True
        if "inbound_nodes" in entry:
            entry["inbound_nodes"] = swap(entry["inbound_nodes"])
        kept.append(entry)
    config["layers"] = kept
    if "output_layers" in config:
        config["output_layers"] = swap(config["output_layers"])
    return config


def _folded_weights(producer, bn) -> list[np.ndarray]:
    weights = producer.get_weights()
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[-2] * kernel.shape[-1]
                                                       if type(producer).__name__ == "DepthwiseConv2D"
                                                       else kernel.shape[-1], np.float32)
    channels = bias.shape[0]
    gamma = bn.gamma.numpy() if bn.scale else np.ones(channels, np.float32)
    beta = bn.beta.numpy() if bn.center else np.zeros(channels, np.float32)
    factor = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    folded = kernel * factor.reshape(kernel.shape[-2:]) if type(producer).__name__ == "DepthwiseConv2D" \
        else kernel * factor
    return [folded.astype(kernel.dtype), ((bias - bn.moving_mean.numpy()) * factor + beta).astype(kernel.dtype)]


def foldable_batchnorms(model) -> dict[str, str]:
    """{BatchNormalization name: the layer it would fold into} for `model`."""
    return _foldable_pairs(model, model.get_config())[0]


def fold_batchnorm_layers(model):
    """A copy of `model` with every foldable BatchNormalization folded into the layer before it.

    Returns:
        `(new_model, {batchnorm_name: layer_name}, {batchnorm_name: why it stays})`; the model
        is a plain copy when none folds.
    """
    keras = _tf.keras()
    config = model.get_config()
    pairs, left = _foldable_pairs(model, config)
    sequential = isinstance(model, keras.Sequential)
    new = (keras.Sequential if sequential else keras.Model).from_config(_rewired(config, pairs))
    bn_of = {producer: bn for bn, producer in pairs.items()}
    for layer in new.layers:
        old = model.get_layer(layer.name)
        if layer.name in bn_of:
            layer.set_weights(_folded_weights(old, model.get_layer(bn_of[layer.name])))
        else:
            layer.set_weights(old.get_weights())
    return new, pairs, left


class FoldBatchNormStage(Stage):
    """Folds BatchNormalization into the Conv/Dense layer before it (no training).

    Put it before `cluster` (after `prune`) on a network with BatchNormalization (MobileNet,
    EfficientNet, ResNet) that ends in post-training quantization: clustering then shares
    the values that ship, and the zeros pruning made stay zeros. After pruning, not before:
    fine-tuning a pruned network without its BNs recovered far less (MobileNetV2 at 95%
    sparsity: a 31 pp drop folded first). Not before QAT: TF-MOT's QAT folds BN itself, and
    PCQAT after a fold lost the sparsity and clusters of MobileNetV2's Conv+ReLU6 layers. A BN
    that cannot fold (after an activation, after a layer that also feeds others, ...) stays,
    each named in the notes with its reason; BNs inside a nested model are not reached. The
    check: the folded model computes what the input model computes (inference).

    Returns:
        A `FoldBatchNormStage` for `Pipeline`.

    Example:
        >>> fold_batchnorm().params()
        {}
    """

    kind = "fold_batchnorm"
    trains = False

    def params(self) -> dict:
        return {}

    def apply(self, model, ctx: StageContext) -> StageOutput:
        folded, pairs, left = fold_batchnorm_layers(model)
        x = ctx.val.features(64)
        before, after = _outputs(model, x), _outputs(folded, x)
        diff = max(float(np.max(np.abs(b - a)) / max(float(np.max(np.abs(b))), 1e-12)) for b, a in zip(before, after))
        checks = (Check("same outputs (inference)", f"max |diff| <= {_TOLERANCE:g} of each output's range",
                        f"{diff:.2g}", diff <= _TOLERANCE),)
        notes = [f"folded {len(pairs)} BatchNormalization layer(s) into the layer before each"]
        notes += [f"{name} stays: {why}" for name, why in left.items()]
        logger.info("fold_batchnorm: %s", "; ".join(notes))
        # The kernels the stage before measured, as folded: what later stages' checks compare with.
        names = sorted({k.split("/")[0] for k in ctx.previous[-1].kernels}) if ctx.previous else []
        kernels = {k: v.to_dict() for k, v in kernel_stats(folded, names).items()} if names else {}
        return StageOutput(folded, checks, kernels, tuple(notes))


def _outputs(model, x) -> list[np.ndarray]:
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


fold_batchnorm = stage_builder(FoldBatchNormStage, "fold_batchnorm")
