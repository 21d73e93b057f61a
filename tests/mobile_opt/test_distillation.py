"""Distillation stage: validation, loss behaviour, and real students on Fashion-MNIST."""

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.distillation import distill
from mobile_opt.errors import RecipeError
from mobile_opt.lowrank import low_rank
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.recipe import load_recipe
from mobile_opt.zoo import lenet_300_100


@pytest.fixture(scope="module")
def fmnist():
    (x, y), (xt, yt) = load_fashion_mnist()
    return (x[:3000] / 255.0, y[:3000]), (xt[:1000] / 255.0, yt[:1000])


@pytest.fixture(scope="module")
def teacher(fmnist):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*fmnist[0], epochs=3, batch_size=64, verbose=0)
    return model


def _small_student():
    keras = _tf.keras()
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                             keras.layers.Dense(32, activation="relu", name="h"),
                             keras.layers.Dense(10, activation="softmax", name="out")], name="student")


def test_bad_arguments_say_what_to_do():
    with pytest.raises(RecipeError, match="teacher=None, student=None"):
        distill()
    with pytest.raises(RecipeError, match="temperature=0"):
        distill(student=_small_student(), temperature=0)
    with pytest.raises(RecipeError, match="alpha=1.5"):
        distill(student=_small_student(), alpha=1.5)


def test_mismatched_student_is_refused(fmnist, teacher):
    keras = _tf.keras()
    wrong = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(5)])
    with pytest.raises(RecipeError, match="same inputs and predict the same classes"):
        Pipeline([distill(student=wrong)]).run(teacher, fmnist[0], fmnist[1], fine_tune_epochs=1)


def test_distill_orders_before_compression_and_in_recipes():
    assert [s.kind for s in Pipeline([distill(student=_small_student()), low_rank(4), prune(0.5)]).stages] == [
        "distill", "low_rank", "prune"]
    with pytest.raises(RecipeError, match="cannot come after"):
        Pipeline([prune(0.5), distill(student=_small_student())])
    recipe = load_recipe({"stages": [{"kind": "low_rank", "energy": 0.9}, {"kind": "prune", "sparsity": 0.5}]})
    assert recipe.pipeline.stages[0].kind == "low_rank"


@pytest.mark.slow
def test_student_learns_from_teacher_on_fashion_mnist(fmnist, teacher):
    keras = _tf.keras()
    keras.utils.set_random_seed(1)
    student = _small_student()
    result = Pipeline([distill(student=student, temperature=4.0, alpha=0.9, epochs=3)]).run(
        teacher, fmnist[0], fmnist[1], fine_tune_epochs=1, batch_size=32)
    stage = result.stages[0]
    assert stage.ok, stage.checks
    assert result.model.count_params() == student.count_params() < teacher.count_params()
    # The student (1/10 of the teacher's size) reaches a real accuracy measured on 1000
    # held-out images: far above chance (10%) and near the teacher's.
    assert stage.accuracy > 0.7
    assert stage.accuracy > result.baseline_accuracy - 0.08
    # The original student object was not trained in place.
    assert not np.allclose(student.get_layer("h").get_weights()[0], result.model.get_layer("h").get_weights()[0])


@pytest.mark.slow
def test_self_distillation_of_current_model_keeps_accuracy(fmnist, teacher):
    keras = _tf.keras()
    keras.utils.set_random_seed(2)
    # A fresh copy of the architecture as the model, the trained one as the teacher.
    fresh = lenet_300_100()
    result = Pipeline([distill(teacher, temperature=2.0, alpha=0.5)]).run(
        fresh, fmnist[0], fmnist[1], fine_tune_epochs=2, batch_size=32)
    assert result.baseline_accuracy < 0.3  # the untrained model guesses
    assert result.stages[0].accuracy > 0.7
