"""Which output channels of a tf_keras model can be removed together, and the rewrite that removes them.

Every layer's output has a channel space (its last axis). A Conv/Dense layer makes a
new one; layers that act per channel (BatchNormalization, ReLU, pooling, padding,
DepthwiseConv2D with multiplier 1, ...) pass their input's space through; Add-like
merges tie their inputs' spaces into one (a residual block's channels are pruned
together). Union-find over layers gives the groups. A group is *fixed* (never
pruned) when it reaches a model input or output, a layer we do not know channel-wise
(Flatten, Reshape, Concatenate, Softmax, ...), or a producer outside the selection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from mobile_opt import _tf
from mobile_opt.errors import UnsupportedModelError

__all__ = ["ChannelGroup", "channel_groups", "filter_scores", "rebuild_pruned"]

_PRODUCERS = {"Conv1D": "filters", "Conv2D": "filters", "Dense": "units"}
# Per-channel layers without channel-indexed weights: the space passes through unchanged.
_PASS = {
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "ActivityRegularization", "MaxPooling1D", "MaxPooling2D",
    "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
    "Cropping2D", "UpSampling1D", "UpSampling2D",
}
_MERGES = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
# Activations that mix channels: removing one changes the others.
_CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax"}


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels shared by `producers` (tied through residual merges); `size` channels each."""

    producers: tuple[str, ...]
    size: int


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _inbound(layer) -> list:
    nodes = layer.inbound_nodes
    if len(nodes) > 1:
        raise UnsupportedModelError(
            f"Layer {layer.name!r} is shared (called {len(nodes)} times); channel pruning needs each "
            "layer called once. Rebuild the model without shared layers."
        )
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _channels_last(config: dict) -> bool:
    return config.get("data_format") in (None, "channels_last")


def _role(layer) -> str:
    """'produce', 'pass', 'merge' or 'fixed' (anything we cannot follow channel-wise)."""
    kind, config = type(layer).__name__, layer.get_config()
    if kind in _PRODUCERS:
        return "produce" if config.get("groups", 1) == 1 and _channels_last(config) else "fixed"
    if kind == "DepthwiseConv2D":
        return "pass" if config.get("depth_multiplier", 1) == 1 and _channels_last(config) else "fixed"
    if kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        return "pass" if axis in (-1, len(layer.input_shape) - 1) else "fixed"
    if kind == "Activation":
        return "fixed" if config.get("activation") in _CHANNEL_MIXING_ACTIVATIONS else "pass"
    if kind in _PASS:
        return "pass" if _channels_last(config) else "fixed"
    if kind in _MERGES:
        return "merge"
    return "fixed"


class _Graph:
    """The model's layers, their inputs, and the union-find of their channel spaces."""

    def __init__(self, model, selected: set[str]):
        self.model = model
        self.inputs: dict[str, list[str]] = {}
        self.roles: dict[str, str] = {}
        self.spaces = _UnionFind()
        fixed: set[str] = set()
        known = {layer.name for layer in model.layers}
        for layer in model.layers:
            inbound = [l.name for l in _inbound(layer)]
            self.inputs[layer.name] = inbound
            role = "fixed" if type(layer).__name__ == "InputLayer" else _role(layer)
            # A softmax over its own outputs ties them all: such a producer keeps its filters.
            mixing = layer.get_config().get("activation") in _CHANNEL_MIXING_ACTIVATIONS
            if role == "produce" and (layer.name not in selected or mixing):
                fixed.add(layer.name)
            self.roles[layer.name] = role
            self.spaces.find(layer.name)
            if role in ("pass", "merge"):
                for name in inbound:
                    self.spaces.union(layer.name, name)
            elif role == "fixed":
                fixed.add(layer.name)
                fixed.update(inbound)
            # A Sequential model's layers list holds no InputLayer: its input is fixed too.
            fixed.update(name for name in inbound if name not in known)
        fixed.update(model.output_names)
        self.fixed_roots = {self.spaces.find(n) for n in fixed}

    def root(self, name: str) -> str:
        return self.spaces.find(name)

    def input_root(self, name: str) -> str | None:
        inbound = self.inputs[name]
        return self.root(inbound[0]) if len(inbound) == 1 else None

    def groups(self) -> dict[str, ChannelGroup]:
        """Prunable groups by root: not fixed, made by at least one producer."""
        members: dict[str, list[str]] = {}
        for name, role in self.roles.items():
            if role == "produce":
                members.setdefault(self.root(name), []).append(name)
        out = {}
        for root, producers in members.items():
            if root in self.fixed_roots:
                continue
            size = int(self.model.get_layer(producers[0]).get_weights()[0].shape[-1])
            out[root] = ChannelGroup(tuple(producers), size)
        return out


def channel_groups(model, selected) -> tuple[_Graph, dict[str, ChannelGroup]]:
    """The model's channel graph and its prunable groups (keyed by union-find root)."""
    graph = _Graph(model, set(selected))
    return graph, graph.groups()


def filter_scores(model, group: ChannelGroup, criterion: str) -> np.ndarray:
    """One score per output channel: the summed L1 or L2 norm of the group's filters."""
    total = np.zeros(group.size, dtype=np.float64)
    for name in group.producers:
        kernel = np.asarray(model.get_layer(name).get_weights()[0], dtype=np.float64)
        flat = kernel.reshape(-1, kernel.shape[-1])
        total += np.abs(flat).sum(axis=0) if criterion == "l1" else np.sqrt(np.square(flat).sum(axis=0))
    return total


def _slice_weights(layer, weights: list, graph: _Graph, keep: dict[str, np.ndarray]) -> list:
    kind, name = type(layer).__name__, layer.name
    in_keep = keep.get(graph.input_root(name) or "")
    if graph.roles[name] == "produce":
        out_keep = keep.get(graph.root(name))
        kernel = weights[0]
        if in_keep is not None:
            kernel = np.take(kernel, in_keep, axis=-2)
        if out_keep is not None:
            kernel = np.take(kernel, out_keep, axis=-1)
            rest = [np.take(w, out_keep, axis=-1) for w in weights[1:]]
        else:
            rest = weights[1:]
        return [kernel, *rest]
    if in_keep is None:
        return weights
    if kind == "DepthwiseConv2D":
        return [np.take(weights[0], in_keep, axis=2), *[np.take(w, in_keep, axis=-1) for w in weights[1:]]]
    if kind == "BatchNormalization":
        return [np.take(w, in_keep, axis=-1) for w in weights]
    return weights


def rebuild_pruned(model, graph: _Graph, groups: dict[str, ChannelGroup], keep: dict[str, np.ndarray]):
    """A copy of `model` with only the `keep[root]` output channels of each group, weights sliced.

    The architecture is rewritten in the model's config (filters/units of the producers);
    every dependent layer (BatchNormalization, DepthwiseConv2D, the next layer's input
    channels) follows from the new shapes, and its kept weight slices are copied.
    """
    keras = _tf.keras()
    new_size = {p: len(keep[root]) for root, g in groups.items() if root in keep for p in g.producers}
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        entry.pop("build_config", None)  # holds the old input shapes
        name = entry["config"].get("name")
        if name in new_size:
            entry["config"][_PRODUCERS[entry["class_name"]]] = new_size[name]
    if isinstance(model, keras.Sequential):
        new_model = keras.Sequential.from_config(config)
    else:
        new_model = keras.Model.from_config(config)
    for layer in new_model.layers:
        old = model.get_layer(layer.name)
        layer.set_weights(_slice_weights(old, old.get_weights(), graph, keep))
    return new_model
