"""Low-rank stage: SVD maths, model rewriting (Sequential + Functional), and a real fine-tune."""

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.errors import RecipeError
from mobile_opt.lowrank import SUFFIX, factorize, low_rank, rank_for_energy, rebuild_factorized
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.zoo import lenet5, lenet_300_100


@pytest.fixture(scope="module")
def fmnist():
    (x, y), (xt, yt) = load_fashion_mnist()
    return (x[:3000] / 255.0, y[:3000]), (xt[:1000] / 255.0, yt[:1000])


def test_rank_for_energy_is_smallest_rank_reaching_it():
    s = np.array([3.0, 2.0, 1.0])  # squared: 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 9 / 14 + 1e-6) == 2
    assert rank_for_energy(s, 1.0) == 3


def test_factorize_is_the_best_low_rank_approximation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 30)).astype(np.float32)
    a, b, energy = factorize(w, 10)
    assert a.shape == (40, 10) and b.shape == (10, 30)
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    # Eckart-Young: the Frobenius error of the best rank-r approximation is the tail energy.
    assert np.linalg.norm(w - a @ b) == pytest.approx(np.sqrt(np.sum(s[10:] ** 2)), rel=1e-4)
    assert energy == pytest.approx(np.sum(s[:10] ** 2) / np.sum(s ** 2), rel=1e-6)
    a, b, energy = factorize(w, 30)
    np.testing.assert_allclose(a @ b, w, atol=1e-4)
    assert energy == pytest.approx(1.0)


@pytest.mark.parametrize("build", [lenet_300_100, lenet5])
def test_full_rank_rebuild_computes_the_same_function(build):
    model = build()
    x = np.random.default_rng(1).random((8, 28, 28)).astype(np.float32)
    plan = {"fc1": (min(model.get_layer("fc1").kernel.shape), "explicit")}
    if build is lenet5:
        plan["conv2"] = (50, "explicit")  # 500 -> 50: full rank of the 500x50 matrix
    new, energies = rebuild_factorized(model, plan)
    assert all(e == pytest.approx(1.0) for e in energies.values())
    np.testing.assert_allclose(new(x), model(x), atol=1e-4)
    names = [l.name for l in new.layers]
    assert names.index("fc1" + SUFFIX) == names.index("fc1") - 1


def test_functional_model_is_rewritten_in_the_graph():
    keras = _tf.keras()
    inp = keras.Input((28, 28))
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(64, activation="relu", name="hidden")(h)
    out = keras.layers.Dense(10, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    new, _ = rebuild_factorized(model, {"hidden": (8, "explicit")})
    assert new.get_layer("hidden" + SUFFIX).kernel.shape == (784, 8)
    assert new.get_layer("hidden").kernel.shape == (8, 64)
    assert new.count_params() == 784 * 8 + 8 * 64 + 64 + 650


def test_bad_arguments_say_what_to_do():
    with pytest.raises(RecipeError, match="rank=0"):
        low_rank(0)
    with pytest.raises(RecipeError, match="energy=1.5"):
        low_rank(energy=1.5)
    with pytest.raises(RecipeError, match="not both"):
        low_rank(4, param_ratio=0.5)


def test_rank_above_kernel_rank_is_refused(fmnist):
    model = lenet_300_100()
    with pytest.raises(RecipeError, match="maximum rank 100"):
        Pipeline([low_rank({"fc2": 101})]).run(model, fmnist[0], fmnist[1], fine_tune_epochs=1)


@pytest.mark.slow
def test_low_rank_then_prune_on_fashion_mnist(fmnist):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*fmnist[0], epochs=3, batch_size=64, verbose=0)
    result = Pipeline([low_rank(energy=0.9, layers=None), prune(0.5)]).run(
        model, fmnist[0], fmnist[1], fine_tune_epochs=1)
    lr = result.stages[0]
    assert lr.kind == "low_rank" and lr.ok, lr.checks
    rank = int(lr.checks[1].measured)
    assert result.model.get_layer("fc1" + SUFFIX).kernel.shape == (784, rank)
    assert result.model.count_params() < model.count_params()
    # Measured on 1000 real test images: factorised + pruned still far above chance (10%),
    # and within a few points of the unfactorised baseline.
    assert result.baseline_accuracy > 0.7
    assert lr.accuracy > result.baseline_accuracy - 0.05
    assert result.stages[1].ok


def test_param_ratio_budget_sets_rank(fmnist):
    model = lenet_300_100()
    stage = low_rank(param_ratio=0.1, layers=None)
    kernel = model.get_layer("fc1").get_weights()[0]
    rank, how = stage.choose_rank("fc1", kernel)
    assert how == "budget" and rank * (784 + 300) <= 0.1 * 784 * 300 < (rank + 1) * (784 + 300)
