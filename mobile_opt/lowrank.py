"""Low-rank factorisation (truncated SVD) of Dense and Conv2D kernels, as a pipeline stage.

A Dense kernel W (in × out) becomes two Dense layers, `in → r` (no bias, linear)
then `r → out` (the original bias and activation), with W ≈ A·B from the
truncated SVD. A Conv2D kernel (kh, kw, cin, cout) is reshaped to
(kh·kw·cin) × cout and factorised the same way: a kh×kw conv to `r` channels,
then a 1×1 conv to `cout`. The factorised layers are ordinary tf_keras layers,
so pruning, clustering and quantization can follow.

Example: keep 90% of each kernel's singular-value energy
    >>> low_rank(energy=0.9).params()["energy"]
    0.9
"""

from __future__ import annotations

import copy
import logging
from typing import Mapping

import numpy as np

from mobile_opt import _stage_options as options, _tf
from mobile_opt._checks import check_number
from mobile_opt.errors import RecipeError, UnsupportedModelError
from mobile_opt.layer_selection import LayerSelection
from mobile_opt.measure import kernel_stats
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, stage_builder

__all__ = ["LowRankStage", "low_rank", "factorize"]

logger = logging.getLogger(__name__)

_TYPES = ("Dense", "Conv2D")
# Name suffix of the first (input-side) factor; the second factor keeps the layer's name
# so that later stages' layer selections (e.g. "skip the classifier") still apply.
SUFFIX = "_lr"


def _fraction(name: str, value, *, allow_one: bool) -> float:
    upper = {"at_most": 1} if allow_one else {"below": 1}
    return float(check_number(name, value, above=0, error=RecipeError, **upper))


def _matrix(kernel: np.ndarray) -> np.ndarray:
    """The kernel as a 2-D (fan_in × out) matrix."""
    return kernel.reshape(-1, kernel.shape[-1])


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    """Smallest rank whose singular values hold at least `energy` of the squared total."""
    power = np.square(singular_values.astype(np.float64))
    cumulative = np.cumsum(power) / max(power.sum(), 1e-30)
    return int(min(len(power), np.searchsorted(cumulative, energy - 1e-12) + 1))


def factorize(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Splits a 2-D (or reshaped) kernel into A (fan_in × rank) and B (rank × out).

    The singular values are shared as sqrt(S) on both sides so both factors
    have similar scales (better for later quantization).

    Returns:
        `(a, b, retained_energy)` with `a @ b` the best rank-`rank` approximation.
    """
    matrix = _matrix(kernel).astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    root = np.sqrt(s[:rank])
    a = (u[:, :rank] * root).astype(np.float32)
    b = (root[:, None] * vt[:rank]).astype(np.float32)
    energy = float(np.square(s[:rank]).sum() / max(np.square(s).sum(), 1e-30))
    return a, b, energy


class LowRankStage(Stage):
    """Low-rank (truncated SVD) factorisation of Dense/Conv2D kernels, fine-tuned and verified.

    Args:
        rank: the rank of every selected kernel, or `{layer_name: rank}` (those
            layers only). Default None: chosen per layer from `energy` or `param_ratio`.
        energy: when no rank is given, keep the smallest rank whose singular
            values hold this fraction of the squared total (default 0.95).
        param_ratio: instead of `energy`, a parameter budget: each factorised
            layer keeps at most this fraction of its kernel's weights (default None).
        layers: which layers; default: Dense/Conv2D layers except the first
            conv and the classifier Dense. A layer whose rank would not save
            parameters is left whole (with a note).
        learning_rate: fine-tuning learning rate when no optimizer is given
            (default 1e-4).

    Returns:
        A `LowRankStage` for `Pipeline` (before pruning/clustering/quantization).

    Raises:
        RecipeError: a rank < 1, energy outside (0, 1], param_ratio outside
            (0, 1), or both rank and param_ratio.

    Example: factorise the hidden layers of an MLP to rank 32
        >>> stage = low_rank(32)
        >>> stage.kind, stage.params()["rank"]
        ('low_rank', 32)
    """

    kind = "low_rank"

    def __init__(
        self,
        rank: int | Mapping[str, int] | None = None,
        *,
        energy: float = 0.95,
        param_ratio: float | None = None,
        layers: LayerSelection | None = None,
        learning_rate: float = 1e-4,
    ):
        if rank is not None:
            rank = options.per_layer("rank", rank, at_least=1, integer=True)
        if rank is not None and param_ratio is not None:
            raise RecipeError(
                "Give either rank or param_ratio, not both. "
                f"Received: rank={rank!r}, param_ratio={param_ratio!r}."
            )
        self.rank = rank
        self.energy = _fraction("energy", energy, allow_one=True)
        self.param_ratio = None if param_ratio is None else _fraction("param_ratio", param_ratio, allow_one=False)
        self.layers = options.selection(layers, rank)
        self.learning_rate = options.learning_rate(learning_rate)

    def params(self) -> dict:
        return {
            "rank": self.rank,
            "energy": self.energy,
            "param_ratio": self.param_ratio,
            "layers": self.layers.describe(),
            "learning_rate": self.learning_rate,
        }

    def choose_rank(self, name: str, kernel: np.ndarray) -> tuple[int, str]:
        """The rank for one kernel and how it was chosen ("explicit", "budget" or "energy")."""
        fan_in, out = _matrix(kernel).shape
        if isinstance(self.rank, dict):
            return self.rank[name], "explicit"
        if isinstance(self.rank, int):
            return self.rank, "explicit"
        if self.param_ratio is not None:
            return max(1, int(self.param_ratio * fan_in * out / (fan_in + out))), "budget"
        s = np.linalg.svd(_matrix(kernel).astype(np.float64), compute_uv=False)
        return rank_for_energy(s, self.energy), "energy"

    def apply(self, model, ctx: StageContext) -> StageOutput:
        selected = self.layers.select(model, supported=_TYPES)
        plan, notes = {}, []
        for name in selected:
            layer = model.get_layer(name)
            _check_factorisable(layer)
            kernel = layer.get_weights()[0]
            fan_in, out = _matrix(kernel).shape
            rank, how = self.choose_rank(name, kernel)
            if rank > min(fan_in, out):
                raise RecipeError(
                    f"rank {rank} for layer {name!r} exceeds its kernel's maximum rank "
                    f"{min(fan_in, out)} ({fan_in}×{out}). Received: rank={rank}."
                )
            if rank * (fan_in + out) >= fan_in * out:
                notes.append(f"{name}: left whole, rank {rank} ({how}) would not save parameters "
                             f"({rank}×({fan_in}+{out}) >= {fan_in}×{out})")
                continue
            plan[name] = (rank, how)
        new_model, energies = rebuild_factorized(model, plan)
        if plan:
            ctx.fine_tune(new_model, learning_rate=self.learning_rate, label=f"low-rank {len(plan)} layer(s)")
        before, after = model.count_params(), new_model.count_params()
        checks = [Check("parameters", f"< {before}", str(after), after < before)]
        for name, (rank, how) in plan.items():
            first = new_model.get_layer(name + SUFFIX)
            measured = int(first.get_weights()[0].shape[-1])
            checks.append(Check(f"rank[{name}]", f"{rank} ({how})", str(measured), measured == rank))
            notes.append(f"{name}: rank {rank} ({how}), {energies[name]:.4f} of the singular-value energy kept")
        names = [n for n in plan] + [n + SUFFIX for n in plan]
        stats = kernel_stats(new_model, names) if names else {}
        return StageOutput(new_model, tuple(checks), {k: v.to_dict() for k, v in stats.items()}, tuple(notes))


def _check_factorisable(layer) -> None:
    config = layer.get_config()
    if type(layer).__name__ == "Conv2D":
        if config.get("groups", 1) != 1 or config.get("data_format") not in (None, "channels_last"):
            raise UnsupportedModelError(
                f"Layer {layer.name!r}: only channels_last, ungrouped Conv2D can be factorised. "
                "Exclude it with layers=LayerSelection(exclude=[...])."
            )
    if len(layer.inbound_nodes) != 1:
        raise UnsupportedModelError(
            f"Layer {layer.name!r} is shared (called {len(layer.inbound_nodes)} times); "
            "a shared layer cannot be factorised. Exclude it with layers=LayerSelection(exclude=[...])."
        )


def _factor_configs(layer, rank: int) -> tuple[dict, dict]:
    """Configs of the first (name + SUFFIX) and second (original name) factor layers."""
    config = layer.get_config()
    first = copy.deepcopy(config)
    first.update(name=layer.name + SUFFIX, activation="linear", use_bias=False,
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None)
    second = copy.deepcopy(config)
    second.pop("batch_input_shape", None)
    first.pop("batch_input_shape", None)
    if type(layer).__name__ == "Dense":
        first["units"] = rank
    else:
        first["filters"] = rank
        second.update(kernel_size=(1, 1), strides=(1, 1), padding="valid", dilation_rate=(1, 1))
    return first, second


def rebuild_factorized(model, plan: Mapping[str, tuple[int, str]]):
    """A copy of `model` with each layer in `plan` replaced by its two SVD factors.

    The architecture is rewritten in the model's config (Sequential or
    Functional), so the result is a flat model of ordinary layers; weights are
    copied by layer name.

    Returns:
        `(new_model, {layer_name: retained_energy})`.
    """
    keras = _tf.keras()
    config = copy.deepcopy(model.get_config())
    entries = config["layers"]
    rewritten = []
    for entry in entries:
        name = entry["config"].get("name")
        if name not in plan:
            rewritten.append(entry)
            continue
        first_cfg, second_cfg = _factor_configs(model.get_layer(name), plan[name][0])
        # build_config holds the old input shape, which no longer fits the second factor.
        first = {k: v for k, v in copy.deepcopy(entry).items() if k != "build_config"}
        second = {k: v for k, v in copy.deepcopy(entry).items() if k != "build_config"}
        first["config"], second["config"] = first_cfg, second_cfg
        if "name" in entry:
            first["name"] = first_cfg["name"]
        if "inbound_nodes" in entry:  # Functional: splice the first factor into the graph
            second["inbound_nodes"] = [[[first_cfg["name"], 0, 0, {}]]]
        rewritten += [first, second]
    config["layers"] = rewritten
    if isinstance(model, keras.Sequential):
        new_model = keras.Sequential.from_config(config)
    else:
        new_model = keras.Model.from_config(config)
    energies = {}
    for layer in new_model.layers:
        if layer.name in plan:
            old = model.get_layer(layer.name)
            weights = old.get_weights()
            a, b, energies[layer.name] = factorize(weights[0], plan[layer.name][0])
            first = new_model.get_layer(layer.name + SUFFIX)
            first.set_weights([a.reshape(first.get_weights()[0].shape)])
            layer.set_weights([b.reshape(layer.get_weights()[0].shape)] + weights[1:])
        elif not layer.name.endswith(SUFFIX) or layer.name[: -len(SUFFIX)] not in plan:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new_model, energies


low_rank = stage_builder(LowRankStage, "low_rank")
