"""What `auto_optimize` searches over: latency budgets in user units, trial → stages, where to start.

Sizes are parsed by `converters.budget.parse_size` (one unit table for the whole project).

Kept apart from `auto.py` because these parts are pure (no Optuna study, no files) and are
tested on their own.
"""

from __future__ import annotations

import logging
import math
import re

from mobile_opt import _tf
from mobile_opt._auto_stages import QatOrPtq, Scheduled
from mobile_opt._sensitivity import Sensitivity
from mobile_opt.errors import ConstraintError, RecipeError, UnsupportedModelError

__all__ = ["parse_latency", "SearchSpace", "quant_modes", "CLUSTER_BITS", "CHANNEL_RATIOS", "LOW_RANK_SHARES",
           "QUANT_MODES", "INT4", "QAT_INT4", "PER_TENSOR", "SCHEDULES"]

logger = logging.getLogger(__name__)

_TIME_UNITS = {"": 1.0, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}  # a bare number is ms
_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*"

CLUSTER_BITS = (0, 3, 4, 5, 6)  # 0: no clustering
# What each size measure searches. The raw .tflite stores every weight densely: zeros and
# shared values cost as much as any other, so under "raw" unstructured sparsity and
# clustering are pure accuracy cost and are not searched; fewer weights (channel pruning,
# low rank) and fewer bits per weight (int4 kernels, per-tensor scales) are. Deflate ("zip")
# and Huffman + sparse indices ("coded") shrink with zeros and few distinct values, so there
# sparsity and clustering lead and channel pruning is searched only for latency (a device).
DENSE_SIZES = ("raw",)
# Shares of filters removed by channel pruning: fewer weights and fewer MACs.
CHANNEL_RATIOS = (0.0, 0.25, 0.5)
# Shares of a big hidden Dense layer's weights kept by a low-rank factorisation (0: none),
# and the same from the gentlest to the hardest.
LOW_RANK_SHARES = (0.0, 0.25, 0.5)
_RANKS_HARDER = (0.0, 0.5, 0.25)
# "ptq_int8_per_tensor": PTQ with one weight scale per tensor. Per-channel int8 spends 12 bytes
# (float scale + int64 zero point) per output channel in the graph (170 KB of MobileNetV2
# α0.35's 634 KB) and can give a cluster a different code per channel; per-tensor costs
# accuracy on convolutions instead, which the search measures.
PER_TENSOR = "ptq_int8_per_tensor"
# "int4_fc": int4 kernels on the Dense layers (XNNPACK runs int4 FULLY_CONNECTED), small or
# sensitive ones kept at 8 bits; whether int4 is also faster is CPU-dependent, so with a device
# the measured latency decides. Searched only for models with Dense layers.
INT4 = "int4_fc"
# "qat_int4": the same kernels after 4-bit QAT (what ships is the trained grid). TF-MOT's
# n-bit QAT keeps no zeros or clusters, so it is searched only where no pruning or
# clustering can precede it: under "raw" without a device (no 2:4).
QAT_INT4 = "qat_int4"
QUANT_MODES = ("qat_int8", "ptq_int8", PER_TENSOR, INT4, "dynamic", "float16")
# Full-integer int8 stores every weight in 8 bits or fewer (clustered: fewer distinct codes);
# dynamic-range keeps float activations and biases, float16 16-bit weights: on coded size
# they never beat int8, so they are searched only when latency on a device is an objective.
SIZE_MODES = ("qat_int8", "ptq_int8", PER_TENSOR, INT4)
# Fine-tuning epochs per stage (prune, cluster, QAT) by level. Pruning gets the most: its
# polynomial ramp ends at 70% of its steps and the rest recovers at the final sparsity;
# clustering and QAT only touch up (Han et al. retrain after pruning far longer than after
# weight sharing).
SCHEDULES = {1: (2, 1, 1), 2: (5, 2, 2), 3: (10, 3, 3)}
# How the biggest layer's sparsity spreads to smaller ones: density grows as
# (biggest size / layer size) ** _SIZE_EXPONENT, which reproduces Deep Compression's
# pattern (big FC layers pruned hardest, first conv and classifier least).
_SIZE_EXPONENT = 0.3
# A layer whose kernel is under this share of the biggest one gets one more cluster bit:
# it costs few bytes, and small layers (first conv, classifier) are the sensitive ones.
_SMALL_LAYER_SHARE = 0.05
# A trial whose accuracy drop after pruning (or clustering) exceeds the budget by this much
# is hopeless: the later touch-up stages recover a few tenths of a point, not whole points.
HOPELESS_MARGIN_PP = {"prune_channels": 2.0, "prune": 2.0, "cluster": 1.0}
# Per-channel int8 costs _CHANNEL_PARAM_BYTES per output channel. Deep Compression's usual
# setting (~90% sparse, 4-bit codes plus ~4-bit indices) codes the weights to ~10% of their
# int8 bytes, so when the channels' scales pass that share they are half the coded model or
# more (MobileNetV2 α0.35: 21%; the LeNets: 2%) and per-tensor scales are a starting recipe.
_CHANNEL_PARAM_BYTES = 12
_PER_TENSOR_START_SHARE = 0.10
# Layers whose kernels get int8 scales per output channel.
_KERNEL_LAYERS = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D")


def parse_latency(value, name: str = "latency_budget") -> float | None:
    """Milliseconds from a number or bare-number string (ms), or a string such as "5ms", "800us", "0.01s".

    Raises:
        ConstraintError: not positive, or an unknown unit.

    Example:
        >>> parse_latency("5ms"), parse_latency("800us"), parse_latency(2), parse_latency("5")
        (5.0, 0.8, 2.0, 5.0)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConstraintError(f"{name} must be milliseconds or a string like '5ms'. Received: {name}={value!r}.")
    if isinstance(value, (int, float)):
        ms = float(value)
    else:
        match = re.fullmatch(_NUMBER, str(value))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _TIME_UNITS:
            raise ConstraintError(
                f"{name} must be a time such as '5ms', '800us' or '0.01s' (a bare number is ms). "
                f"Received: {name}={value!r}."
            )
        ms = float(match.group(1)) * _TIME_UNITS[unit]
    if not ms > 0 or not math.isfinite(ms):
        raise ConstraintError(f"{name} must be greater than 0. Received: {name}={value!r}.")
    return ms


def quant_modes(*, size_budget: int | None, with_device: bool) -> tuple[str, ...]:
    """The quantization modes worth searching: dynamic/float16 only when a device times the
    candidates and no size budget is given (they cannot win on coded size)."""
    return QUANT_MODES if with_device and size_budget is None else SIZE_MODES


def cluster_candidates(model) -> list[str]:
    """Layers worth clustering: Dense/Conv2D kernels big enough for TF-MOT to cluster."""
    keras = _tf.keras()
    names = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and type(layer).__name__ in ("Dense", "Conv2D"):
            if layer.get_weights() and layer.get_weights()[0].size >= 256:
                names.append(layer.name)
    return names


class SearchSpace:
    """Trial parameters → stages, built from what experts do rather than blind search.

    Parameters (Optuna names):
        prune: "unstructured" | "none" (| "2:4" when a device times candidates: 2:4 caps
            sparsity at 50% and pays only in latency); no "unstructured" under "raw".
        prune_level: sparsity of the biggest layer; smaller layers get less (density
            grows as (biggest / size) ** 0.3), and no layer is pruned past the point where
            its lone drop (sensitivity scan) exceeds the biggest layer's: Deep Compression's
            pattern, big FC layers hardest, first conv and classifier least.
        cluster_bits: 0 (none) or 3-6 bits for big layers; small or sensitive layers
            get one bit more; only 0 under "raw".
        quantize: int8 QAT (PTQ when QAT fails on the model), PTQ (per-channel or
            per-tensor weight scales), int4 Dense kernels (small/sensitive ones at 8 bits;
            after clustering the centroids go on the int4 grid); dynamic/float16
            only with a device and no size budget. When TF-MOT's QAT cannot wrap some
            layers (they stay float, named in the recipe), the search starts from PTQ.
        channels: 0, 0.25 or 0.5 of the filters removed by channel pruning (halved for
            sensitive layers; stem and classifier kept), under "raw" or when latency is measured.
        low_rank: 0, 0.25 or 0.5: factorise big hidden Dense layers to that share of
            their weights, then distil from the original model (only offered when such
            layers exist).
    """

    def __init__(self, model, sensitivity: Sensitivity, *, level: int, modes: tuple[str, ...],
                 with_device: bool, max_accuracy_drop: float, size: str):
        """`size`: the measure minimised, "raw", "zip" or "coded" (see DENSE_SIZES)."""
        self.model, self.sensitivity = model, sensitivity
        self.dense = size in DENSE_SIZES
        self.epochs = SCHEDULES[level]
        from mobile_opt.batchnorm import foldable_batchnorms
        from mobile_opt.quantization import qat_unsupported

        self.qat_skip = qat_unsupported(model)
        # QAT that cannot cover the model (layers left in float) starts from PTQ instead.
        self.modes = tuple(sorted(modes, key=lambda m: m != "ptq_int8")) if self.qat_skip else modes
        self.int4_layers = [l.name for l in model.layers if type(l).__name__ == "Dense"]
        if not self.int4_layers:
            self.modes = tuple(m for m in self.modes if m != INT4)
        elif self.dense and not with_device and not self.qat_skip and INT4 in self.modes:
            self.modes += (QAT_INT4,)
        self.prune_choices = ((() if self.dense else ("unstructured",)) + ("none",)
                              + (("2:4",) if with_device else ()))
        self.cluster_choices = (0,) if self.dense else CLUSTER_BITS
        self.max_accuracy_drop = max_accuracy_drop
        self.cluster_layers = [] if self.dense else cluster_candidates(model)
        self.foldable = len(foldable_batchnorms(model)) if self.cluster_layers else 0
        self.low_rank_layers = self._low_rank_layers()
        self.channel_layers = self._channel_layers() if with_device or self.dense else ()
        self.baseline_accuracy: float | None = None  # set by the watch on the first stage

    def _low_rank_layers(self) -> dict[str, tuple[int, int]]:
        keras = _tf.keras()
        total = sum(self.sensitivity.sizes.values()) or 1
        dense = [l for l in self.model.layers if type(l).__name__ == "Dense" and isinstance(l, keras.layers.Dense)]
        out = {}
        for layer in dense[:-1]:  # never the classifier
            kernel = layer.get_weights()[0]
            if kernel.size >= 0.25 * total and min(kernel.shape) >= 16:
                out[layer.name] = tuple(int(d) for d in kernel.shape)
        return out

    def _channel_layers(self) -> tuple[str, ...]:
        """Layers whose filters channel pruning can remove (stem, classifier and layers whose
        channels reach an output or a channel-mixing layer excluded)."""
        from mobile_opt.channel_pruning import plan_channels

        try:
            _, groups, _ = plan_channels(self.model, 0.5)
        except (RecipeError, UnsupportedModelError) as exc:  # e.g. shared layers, nothing selectable
            logger.info("channel pruning is not searched: %s", exc)
            return ()
        return tuple(sorted(p for g in groups.values() for p in g.producers))

    # --- recipe from parameters -------------------------------------------------------
    def channel_ratios(self, ratio: float) -> dict[str, float]:
        """Per-layer filter shares: `ratio`, halved for a layer whose lone drop at 50%
        sparsity (sensitivity scan) passes 1 pp."""
        drops = self.sensitivity.drops
        return {n: ratio / 2 if drops.get(n, {}).get("0.5", 0.0) > 1.0 else ratio for n in self.channel_layers}

    def layer_sparsity(self, level: float) -> dict[str, float]:
        sizes = self.sensitivity.sizes
        if not sizes:
            return {}
        big = max(sizes, key=sizes.get)
        ceiling = max(self.sensitivity.drop_at(big, level), 0.5)
        out = {}
        for name, n in sizes.items():
            sparsity = 1.0 - (1.0 - level) * (sizes[big] / max(n, 1)) ** _SIZE_EXPONENT
            while sparsity > 0 and self.sensitivity.drop_at(name, sparsity) > ceiling:
                sparsity -= 0.05
            if sparsity >= 0.05:
                out[name] = round(min(sparsity, 0.99), 3)
        return out

    def layer_bits(self, bits: int) -> dict[str, int]:
        sizes = {n: self.model.get_layer(n).get_weights()[0].size for n in self.cluster_layers}
        if not bits or not sizes:
            return {}
        biggest = max(sizes.values())
        out = {}
        for name, n in sizes.items():
            drops = self.sensitivity.drops.get(name, {})
            sensitive = drops.get("0.5", 0.0) > 1.0
            out[name] = min(8, bits + (1 if n < _SMALL_LAYER_SHARE * biggest or sensitive else 0))
        return out

    def kernel_bits(self) -> dict[str, int]:
        """Dense layers that stay 8-bit under int4: small ones (few bytes to save, often the
        classifier) and those whose lone drop at 50% sparsity passes 1 pp."""
        sizes = {n: self.model.get_layer(n).get_weights()[0].size for n in self.int4_layers}
        biggest = max(sizes.values(), default=0)
        return {n: 8 for n, size in sizes.items()
                if size < _SMALL_LAYER_SHARE * biggest or self.sensitivity.drops.get(n, {}).get("0.5", 0.0) > 1.0}

    def suggest(self, trial, watch=None):
        """Asks `trial` for one recipe; returns `(stages, description)`."""
        from mobile_opt.batchnorm import fold_batchnorm
        from mobile_opt.clustering import cluster
        from mobile_opt.distillation import distill
        from mobile_opt.lowrank import low_rank
        from mobile_opt.pruning import prune
        from mobile_opt.quantization import quantize

        from mobile_opt.channel_pruning import prune_channels

        e_prune, e_cluster, e_qat = self.epochs
        stages, description = [], {}
        channels = trial.suggest_categorical("channels", list(CHANNEL_RATIOS)) if self.channel_layers else 0.0
        if channels:
            ratios = self.channel_ratios(channels)
            stages.append(Scheduled(prune_channels(ratios), e_prune, watch))
            description["channels"] = ratios
        # Low-rank ranks follow the original Dense shapes, which channel pruning would change.
        if self.low_rank_layers and not channels:
            share = trial.suggest_categorical("low_rank", list(LOW_RANK_SHARES))
            if share:
                ranks = {n: max(1, int(share * a * b / (a + b))) for n, (a, b) in self.low_rank_layers.items()}
                stages += [Scheduled(low_rank(ranks), e_cluster),
                           Scheduled(distill(self.model, learning_rate=1e-3), e_prune)]
                description["low_rank"] = ranks
        structure = trial.suggest_categorical("prune", list(self.prune_choices))
        level = trial.suggest_float("prune_level", 0.5, 0.985) if structure == "unstructured" else None
        bits = self.layer_bits(trial.suggest_categorical("cluster_bits", list(self.cluster_choices)))
        mode = trial.suggest_categorical("quantize", list(self.modes))
        if level is not None:
            per_layer = self.layer_sparsity(level)
            description["sparsity"] = per_layer
            if per_layer:
                stages.append(Scheduled(prune(per_layer, schedule="polynomial", learning_rate=1e-3), e_prune, watch))
        elif structure == "2:4":
            stages.append(Scheduled(prune(structure="2:4", learning_rate=1e-3), e_prune, watch))
            description["sparsity"] = "2:4"
        # Clusters that int4 stores are trained on its grid (per tensor: TF-MOT shares one
        # centroid set per Dense kernel), so the int4 stage adds no loss; only when every
        # clustered layer goes to int4, as per-tensor scales then hold for every kernel.
        keep = self.kernel_bits() if mode in (INT4, QAT_INT4) else {}
        grid = (bool(bits) and mode == INT4 and set(bits) <= set(self.int4_layers) - set(keep)
                and max(bits.values()) <= 4)
        if bits and self.foldable and mode not in ("qat_int8", QAT_INT4):
            # The converter folds BN after our stages, scaling each channel's clusters apart:
            # fold before clustering, after pruning (pruned MobileNetV2 recovered far less
            # without its BNs: 12-31 pp lost at 93-95% sparsity). QAT folds BN itself, and its
            # cluster-preserving scheme needs the BN there (PCQAT after a fold lost sparsity).
            stages.append(fold_batchnorm())
            description["fold_batchnorm"] = self.foldable
        if bits:
            stages.append(Scheduled(cluster({k: 2**v for k, v in bits.items()}, learning_rate=1e-4, int4_grid=grid),
                                    e_cluster, watch))
            description["cluster_bits"] = bits
        if mode == "qat_int8":
            qat = quantize("qat_int8", skip_layers=self.qat_skip, learning_rate=1e-4)
            stages.append(Scheduled(QatOrPtq(qat, quantize("ptq_int8")), e_qat))
            if self.qat_skip:
                description["qat_skipped_layers"] = list(self.qat_skip)
        elif mode == PER_TENSOR:
            stages.append(quantize("ptq_int8", per_channel=False))
        elif mode in (INT4, QAT_INT4):
            ptq = quantize(INT4, bits=keep or None, per_channel=not grid)
            stages.append(ptq if mode == INT4 else Scheduled(
                QatOrPtq(quantize(QAT_INT4, bits=keep or None, learning_rate=1e-4), ptq), e_qat))
            description["kernel_bits"] = {n: keep.get(n, 4) for n in self.int4_layers}
        else:
            stages.append(quantize(mode))
        description["quantize"] = mode
        description["fine_tune_epochs"] = dict(zip(("prune", "cluster", "qat"), self.epochs))
        return stages, description

    # --- where the search starts and how it pushes ---------------------------------------
    def defaults(self) -> list[dict]:
        """Generic starting recipes (the same rule for every network): plain int8, then a
        compressed one, and that with per-tensor scales where per-channel ones would weigh
        as much as the compressed weights. Compressed: Deep Compression's usual setting
        (~90% sparsity on the big layers, 4-bit sharing with one bit more for small layers,
        QAT); under "raw" fewer weights and bits instead (a quarter of the filters removed,
        else big hidden Dense layers at half their weights; int4 Dense kernels, trained
        where QAT fits, else QAT int8)."""
        base = {"low_rank": 0.0} if self.low_rank_layers else {}
        if self.channel_layers:
            base["channels"] = 0.0
        plain = {**base, "prune": "none", "cluster_bits": 0, "quantize": "ptq_int8"}
        if self.dense:
            cut = {"channels": 0.25} if self.channel_layers else {"low_rank": 0.5} if self.low_rank_layers else {}
            int4 = [m for m in (QAT_INT4, INT4) if m in self.modes]
            deep = {**plain, **cut, "quantize": int4[0] if int4 else self.modes[0]}
        else:
            deep = {**base, "prune": "unstructured", "prune_level": 0.9,
                    "cluster_bits": 4 if self.cluster_layers else 0, "quantize": self.modes[0]}
        if PER_TENSOR in self.modes and self.channel_param_share() > _PER_TENSOR_START_SHARE:
            return [plain, deep, {**deep, "quantize": PER_TENSOR}]
        return [plain, deep]

    def channel_param_share(self) -> float:
        """Bytes of per-channel int8 scales and zero points over the int8 weight bytes."""
        channels = weights = 0
        for layer in self.model.layers:
            if type(layer).__name__ not in _KERNEL_LAYERS or not layer.get_weights():
                continue
            kernel = layer.get_weights()[0]
            weights += kernel.size
            # A depthwise kernel (h, w, in, multiplier) has in × multiplier output channels.
            channels += kernel.shape[-2] * kernel.shape[-1] if type(layer).__name__ == "DepthwiseConv2D" else kernel.shape[-1]
        return _CHANNEL_PARAM_BYTES * channels / max(weights, 1)

    def pushes(self, params: dict, slack: float = 0.0) -> list[dict]:
        """More aggressive neighbours of a feasible recipe, most promising first: the
        search spends the accuracy headroom it has instead of stopping at the first fit.

        `slack` is the unused share of the accuracy budget (1 = none used; above 1 the
        recipe gained accuracy): with much left, the density of the pruned layers halves;
        with little, it shrinks by a quarter, then by a tenth. Under "raw": the next share
        of filters removed or the next lower rank, then the quantization steps.
        """
        if self.dense:
            cuts = [p for p in (self.faster(params), self._lower_rank(params)) if p is not None]
            return cuts + self._quant_pushes(params)
        out = []
        if params.get("prune") == "unstructured":
            level = params["prune_level"]
            for keep in ((0.5, 0.75) if slack >= 0.5 else (0.75, 0.9)):
                pushed = round(min(0.985, 1 - (1 - level) * keep), 4)
                if pushed > level and all(p.get("prune_level") != pushed for p in out):
                    out.append({**params, "prune_level": pushed})
        elif params.get("prune") == "none" and "unstructured" in self.prune_choices:
            out.append({**params, "prune": "unstructured", "prune_level": 0.9})
        bits = params.get("cluster_bits", 0)
        if bits and bits > CLUSTER_BITS[1]:
            out.append({**params, "cluster_bits": bits - 1})
        elif not bits and self.cluster_layers:
            out.append({**params, "cluster_bits": 5})
        out += self._quant_pushes(params)
        # The big sparsity step first, then fewer bits, then the small sparsity step.
        return out[:1] + out[2:] + out[1:2] if len(out) > 2 else out

    def _quant_pushes(self, params: dict) -> list[dict]:
        """QAT (or PTQ where QAT cannot cover the model) first, then per-tensor scales, int4
        kernels. Under "raw" only fewer bits: int4 kernels, then trained ones, per-tensor scales."""
        now = params.get("quantize")
        if self.dense:
            steps = [INT4] if now not in (INT4, QAT_INT4) else [QAT_INT4] if now == INT4 else []
            steps += [PER_TENSOR] if now in ("ptq_int8", "qat_int8") else []
            return [{**params, "quantize": m} for m in steps if m in self.modes]
        out = []
        if params.get("quantize") != self.modes[0]:
            out.append({**params, "quantize": self.modes[0]})
        elif PER_TENSOR in self.modes:
            out.append({**params, "quantize": PER_TENSOR})
        if INT4 in self.modes and params.get("quantize") != INT4:
            out.append({**params, "quantize": INT4})
        return out

    def _lower_rank(self, params: dict) -> dict | None:
        """The next smaller share of weights kept by low rank (none -> 0.5 -> 0.25); None without
        such layers, beside channel pruning (not suggested together) or at the smallest share."""
        now = params.get("low_rank", 0.0)
        harder = _step(_RANKS_HARDER, now, +1)
        if not self.low_rank_layers or params.get("channels") or harder == now:
            return None
        return {**params, "low_rank": harder}

    def between(self, good: dict, bad: dict) -> dict | None:
        """`good` with a sparsity between its own and `bad`'s (geometric mean of the densities;
        no pruning counts as density 0.5), when `bad` prunes harder and the gap is worth a
        trial (densities more than 1.25× apart); else None. Bisects towards the frontier."""
        if bad.get("prune") != "unstructured" or good.get("prune") not in ("unstructured", "none"):
            return None
        lo = 1 - good["prune_level"] if good.get("prune") == "unstructured" else 0.5
        hi = 1 - bad["prune_level"]
        if lo / hi <= 1.25:
            return None
        return {**good, "prune": "unstructured", "prune_level": round(1 - math.sqrt(lo * hi), 4)}

    def faster(self, params: dict) -> dict | None:
        """The neighbour of a too-slow recipe with the next share of filters removed (None
        when channel pruning is not searched or already at its largest share)."""
        now = params.get("channels", 0.0)
        more = _step(CHANNEL_RATIOS, now, +1)
        if not self.channel_layers or more == now:
            return None
        out = {**params, "channels": more}
        out.pop("low_rank", None)  # not suggested beside channel pruning
        return out

    def relax(self, params: dict) -> dict | None:
        """A gentler neighbour of an infeasible recipe (when nothing is feasible yet): twice
        the density and one more cluster bit at once, so a network that wants far less
        compression than the defaults gets there in few trials. Under "raw": fewer filters
        removed, a bigger rank and 8-bit per-channel kernels at once."""
        out = dict(params)
        if self.dense:
            if params.get("channels"):
                out["channels"] = _step(CHANNEL_RATIOS, params["channels"], -1)
            if params.get("low_rank"):
                out["low_rank"] = _step(_RANKS_HARDER, params["low_rank"], -1)
            if params.get("quantize") in (INT4, QAT_INT4, PER_TENSOR):
                out["quantize"] = self.modes[0]
        elif params.get("prune") == "unstructured" and params["prune_level"] > 0.5:
            out["prune_level"] = round(max(0.5, 1 - (1 - params["prune_level"]) * 2), 4)
        if params.get("cluster_bits") and params["cluster_bits"] < CLUSTER_BITS[-1]:
            out["cluster_bits"] = params["cluster_bits"] + 1
        return out if out != params else None

    def hopeless(self, kind: str, drop_pp: float) -> bool:
        """Whether a trial whose drop after `kind` is `drop_pp` cannot end within budget."""
        margin = HOPELESS_MARGIN_PP.get(kind)
        return margin is not None and drop_pp > self.max_accuracy_drop + margin


def _step(choices: tuple, now, direction: int):
    """The neighbour of `now` in the ordered `choices` (+1 next, -1 previous); `now` at either end stays."""
    i = choices.index(now) + direction
    return choices[i] if 0 <= i < len(choices) else now
