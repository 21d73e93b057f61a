"""Knowledge distillation (Hinton et al., 2015) as a pipeline stage.

The student learns from the teacher's temperature-softened outputs (KL
divergence at temperature T, scaled by T² so its gradients keep their size)
mixed with the ordinary hard-label loss:

    loss = alpha · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + (1 − alpha) · hard_loss

Models that end in softmax give probabilities, not logits; log-probabilities
differ from the logits only by a per-sample constant, which the softmax
cancels, so `log p` stands in for the logits exactly.

Example: distil a trained model into a smaller student
    >>> stage = distill("teacher.keras", temperature=4.0, alpha=0.9)  # doctest: +SKIP
    >>> stage.params()["temperature"]  # doctest: +SKIP
    4.0
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mobile_opt import _stage_options as options, _tf
from mobile_opt._checks import check_number
from mobile_opt.errors import RecipeError
from mobile_opt.models import check_model, load_model
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, clone, stage_builder

__all__ = ["DistillStage", "distill"]

logger = logging.getLogger(__name__)


def _resolve(model, name: str):
    if model is None:
        return None
    if isinstance(model, (str, Path)):
        return load_model(model)
    check_model(model)
    return model


def _outputs_probabilities(model) -> bool:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


class DistillStage(Stage):
    """Knowledge distillation: the student learns from the teacher's softened outputs.

    Args:
        teacher: a tf_keras model or a path to one. Default None: the model
            entering the stage is the teacher (then `student` is required).
        temperature: softening temperature T (default 4.0).
        alpha: weight of the soft-label (KL) loss; `1 - alpha` weighs the
            hard-label loss (default 0.9).
        student: a (smaller) tf_keras model or path, trained from its current
            weights. Default None: the model entering the stage is the student.
        epochs: distillation epochs (default None: the pipeline's fine-tune epochs).
        learning_rate: Adam learning rate when the pipeline has no optimizer
            (default 1e-3: students usually need real training, not a touch-up).

    Returns:
        A `DistillStage` for `Pipeline` (before pruning/clustering/quantization).

    Raises:
        RecipeError: neither teacher nor student, temperature <= 0, alpha
            outside [0, 1], or bad epochs/learning_rate.
        InputError / ModelFormatError / UnsupportedModelError: a model path
            that cannot be read, or a model TF-MOT cannot handle.

    Example: shrink the trained model into a smaller architecture
        >>> stage = distill(student=small_model, temperature=4.0)  # doctest: +SKIP
    """

    kind = "distill"

    def __init__(
        self,
        teacher=None,
        *,
        temperature: float = 4.0,
        alpha: float = 0.9,
        student=None,
        epochs: int | None = None,
        learning_rate: float = 1e-3,
    ):
        if teacher is None and student is None:
            raise RecipeError(
                "distill() needs a teacher (to distil the current model from it) or a student "
                "(to distil the current model into it). Received: teacher=None, student=None."
            )
        check_number("temperature", temperature, above=0, hint="(typically 2-10)", error=RecipeError)
        check_number("alpha", alpha, at_least=0, at_most=1, hint="(the soft-label weight)", error=RecipeError)
        check_number("epochs", epochs, at_least=1, integer=True, optional=True, error=RecipeError)
        learning_rate = options.learning_rate(learning_rate)
        self.teacher_source = str(teacher) if isinstance(teacher, (str, Path)) else None
        self.student_source = str(student) if isinstance(student, (str, Path)) else None
        self.teacher = _resolve(teacher, "teacher")
        self.student = _resolve(student, "student")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.epochs = epochs
        self.learning_rate = learning_rate

    def params(self) -> dict:
        def describe(model, source):
            if model is None:
                return None
            return source or f"<model {model.name!r}, {model.count_params()} params>"

        return {
            "teacher": describe(self.teacher, self.teacher_source) or "<the input model>",
            "student": describe(self.student, self.student_source) or "<the input model>",
            "temperature": self.temperature,
            "alpha": self.alpha,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
        }

    def apply(self, model, ctx: StageContext) -> StageOutput:
        tf, keras = _tf.tf(), _tf.keras()
        teacher = self.teacher if self.teacher is not None else model
        student = clone(self.student if self.student is not None else model)
        for role, m in (("teacher", teacher), ("student", student)):
            if tuple(m.input_shape[1:]) != tuple(model.input_shape[1:]) or m.output_shape[-1] != model.output_shape[-1]:
                raise RecipeError(
                    f"The {role} must take the same inputs and predict the same classes as the model: "
                    f"expected input {model.input_shape[1:]}, {model.output_shape[-1]} outputs. "
                    f"Received: input {m.input_shape[1:]}, {m.output_shape[-1]} outputs."
                )
        teacher_probs, student_probs = _outputs_probabilities(teacher), _outputs_probabilities(student)
        hard_loss = keras.losses.get(ctx.loss) if isinstance(ctx.loss, str) else ctx.loss
        optimizer = ctx.make_optimizer(self.learning_rate)
        t, alpha = self.temperature, self.alpha

        def logits(output, is_probs):
            return tf.math.log(tf.clip_by_value(output, 1e-12, 1.0)) if is_probs else output

        @tf.function
        def step(x, y):
            soft_targets = tf.nn.softmax(logits(teacher(x, training=False), teacher_probs) / t)
            with tf.GradientTape() as tape:
                out = student(x, training=True)
                log_soft = tf.nn.log_softmax(logits(out, student_probs) / t)
                kl = tf.reduce_mean(tf.reduce_sum(
                    soft_targets * (tf.math.log(tf.clip_by_value(soft_targets, 1e-12, 1.0)) - log_soft), axis=-1))
                # A loss given by name is a per-sample function; a Loss object already reduces.
                loss = alpha * t * t * kl + (1 - alpha) * tf.reduce_mean(hard_loss(y, out))
                loss += tf.add_n(student.losses) if student.losses else 0.0
            grads = tape.gradient(loss, student.trainable_variables)
            optimizer.apply_gradients(zip(grads, student.trainable_variables))
            return loss

        epochs = self.epochs or ctx.epochs
        for epoch in range(epochs):
            losses = [float(step(x, y)) for x, y in ctx.train.dataset]
            logger.info("distill epoch %d/%d: loss %.4f", epoch + 1, epochs, float(np.mean(losses)))
            if ctx.progress is not None:
                ctx.progress(ctx.progress_offset + min(epoch + 1, ctx.epochs), ctx.progress_total, "distill")
        ctx.progress_offset += ctx.epochs

        agree = total = 0
        for x, _ in ctx.val.dataset:
            agree += int(np.sum(np.argmax(teacher(x, training=False), -1) == np.argmax(student(x, training=False), -1)))
            total += int(x.shape[0])
        agreement = agree / total
        t_params, s_params = teacher.count_params(), student.count_params()
        checks = (
            Check("student parameters", f"<= teacher's {t_params}", str(s_params), s_params <= t_params),
            # A student that learnt from the teacher agrees with it far above chance.
            Check("agreement with teacher", f"> {1.5 / model.output_shape[-1]:.4f} (1.5× chance)",
                  f"{agreement:.4f}", agreement > 1.5 / model.output_shape[-1]),
        )
        notes = (f"teacher {t_params} params, student {s_params} params; "
                 f"student agrees with the teacher on {agreement:.2%} of validation samples",)
        return StageOutput(student, checks, {}, notes)


distill = stage_builder(DistillStage, "distill")
