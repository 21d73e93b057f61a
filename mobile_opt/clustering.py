"""Weight clustering (weight sharing, TF-MOT) as a pipeline stage.

Example: share 16 values per kernel
    >>> cluster(16).params()["clusters"]
    16
"""

from __future__ import annotations

from typing import Mapping

from mobile_opt import _int4, _stage_options as options, _tf
from mobile_opt._compat_tfmot import experimental_cluster
from mobile_opt.errors import RecipeError
from mobile_opt.layer_selection import DEPTHWISE_KERNEL, LayerSelection
from mobile_opt.measure import kernel_arrays, kernel_stats
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, clone, stage_builder

__all__ = ["ClusterStage", "cluster"]

_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


_CLUSTERS = dict(at_least=2, integer=True, hint="(16 = 4-bit shared weights)")


class ClusterStage(Stage):
    """Weight clustering with TF-MOT: each kernel keeps at most `clusters` distinct values.

    Args:
        clusters: number of shared values per kernel (>= 2), or a mapping
            `{layer_name: clusters}` for those layers only.
        init: centroid initialisation: "kmeans++" (default), "linear",
            "density" or "random".
        per_channel: cluster each output channel separately (default False).
        int4_grid: keep the centroids on the int4 grid while fine-tuning (at most 16
            clusters), so that int4 adds no loss: `quantize("int4_fc", per_channel=False)`
            stores exactly these values (TF-MOT 0.8.1 shares one centroid set per Dense
            kernel; per channel only on Conv2D with per_channel=True) (default False).
        preserve_sparsity: keep pruned zeros; default: True when a prune stage
            came before, else False.
        layers: which layers to cluster; default: every Dense/Conv layer except
            the first conv and the classifier Dense.
        learning_rate: fine-tuning learning rate when no optimizer is given
            (default 1e-4).

    Returns:
        A `ClusterStage` for `Pipeline`.

    Raises:
        RecipeError: fewer than 2 clusters, an unknown init, or int4_grid with more than 16.

    Example:
        >>> cluster(8, init="density").params()["init"]
        'density'
    """

    kind = "cluster"

    def __init__(
        self,
        clusters: int | Mapping[str, int],
        *,
        init: str = "kmeans++",
        per_channel: bool = False,
        int4_grid: bool = False,
        preserve_sparsity: bool | None = None,
        layers: LayerSelection | None = None,
        learning_rate: float = 1e-4,
    ):
        clusters = options.per_layer("clusters", clusters, **_CLUSTERS)
        if init not in _INITS:
            raise RecipeError(f"init must be one of {sorted(_INITS)}. Received: init={init!r}.")
        self.clusters = clusters
        self.init = init
        self.per_channel = bool(per_channel)
        self.int4_grid = bool(int4_grid)
        most = max(clusters.values()) if isinstance(clusters, dict) else clusters
        if self.int4_grid and most > 16:
            raise RecipeError(f"int4_grid holds at most 16 values (int4 codes -8..7). Received: clusters={clusters!r}.")
        self.preserve_sparsity = preserve_sparsity
        self.layers = options.selection(layers, clusters)
        self.learning_rate = options.learning_rate(learning_rate)

    def params(self) -> dict:
        return {
            "clusters": self.clusters,
            "init": self.init,
            "per_channel": self.per_channel,
            "int4_grid": self.int4_grid,
            "preserve_sparsity": self.preserve_sparsity,
            "layers": self.layers.describe(),
            "learning_rate": self.learning_rate,
        }

    def check_model(self, model) -> None:
        if self.int4_grid and self.per_channel:
            dense = [n for n in self.layers.select_for_tfmot(model, "cluster", [])
                     if type(model.get_layer(n)).__name__ == "Dense"]
            if dense:
                raise RecipeError(
                    f"int4_grid with per_channel=True cannot hold Dense layers {dense}: TF-MOT 0.8.1 "
                    "clusters a Dense kernel with one set of centroids, which one int4 scale per tensor "
                    "stores exactly. Use cluster(..., int4_grid=True) with per_channel=False and "
                    "quantize('int4_fc', per_channel=False).")

    def count(self, layer_name: str) -> int:
        return self.clusters[layer_name] if isinstance(self.clusters, dict) else self.clusters

    def apply(self, model, ctx: StageContext) -> StageOutput:
        keras, tfmot = _tf.keras(), _tf.tfmot()
        clustering = tfmot.clustering.keras
        experimental = experimental_cluster()  # takes preserve_sparsity (see _compat_tfmot)
        checks, notes = [], []
        selected = self.layers.select_for_tfmot(model, "cluster", notes)
        # After pruning, clustering must keep the zeros or it undoes the pruning.
        preserve = self.preserve_sparsity if self.preserve_sparsity is not None else "prune" in ctx.kinds_before()
        init = getattr(clustering.CentroidInitialization, _INITS[self.init])
        before = kernel_stats(model, selected)
        base = clone(model)

        def wrap(layer):
            if layer.name not in selected:
                return layer
            return experimental.cluster_weights(
                layer,
                number_of_clusters=self.count(layer.name),
                cluster_centroids_init=init,
                preserve_sparsity=preserve,
                cluster_per_channel=self.per_channel,
            )

        wrapped = keras.models.clone_model(base, clone_function=wrap)
        callbacks = [_int4.GridCentroids()] if self.int4_grid else []
        ctx.fine_tune(wrapped, learning_rate=self.learning_rate, callbacks=callbacks, label=f"cluster {self.clusters}")
        stripped = clustering.strip_clustering(wrapped)
        stats = {k: v for k, v in kernel_stats(stripped, selected).items() if not k.endswith(DEPTHWISE_KERNEL)}
        arrays = kernel_arrays(stripped)
        for name, st in stats.items():
            k = self.count(name.split("/")[0])
            if self.int4_grid:
                kernel, _, out_axis = arrays[name]
                off = _int4.off_grid(kernel, out_axis, per_channel=self.per_channel)
                checks.append(Check(f"int4 grid[{name}]", "max |w / scale - round(w / scale)| <= 1e-4",
                                    f"{off:.2g}", off <= 1e-4))
            measured = st.max_unique_per_channel if self.per_channel else st.unique_values
            what = "unique values per channel" if self.per_channel else "unique values"
            checks.append(Check(f"clusters[{name}]", f"{what} <= {k}", str(measured), measured <= k))
            if measured > k and not isinstance(stripped.get_layer(name.split("/")[0]), keras.layers.Dense):
                # TF-MOT silently leaves Conv2D layers with too few weights unclustered.
                notes.append(f"{name}: not clustered by TF-MOT (too few weights for {k} clusters?)")
            if preserve and name in before:
                prior = before[name].sparsity
                checks.append(Check(f"sparsity kept[{name}]", f">= {prior:.4f}", f"{st.sparsity:.4f}",
                                    st.sparsity >= prior - 1.0 / st.size - 1e-6))
        return StageOutput(stripped, tuple(checks), {k: v.to_dict() for k, v in stats.items()}, tuple(notes))


cluster = stage_builder(ClusterStage, "cluster")
