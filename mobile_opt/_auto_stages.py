"""Stage wrappers `auto_optimize` builds its candidates from.

`Scheduled` gives a stage its own fine-tuning epochs (the pipeline has one count for all)
and lets the search look at the model after it, to stop a hopeless trial early.
`QatOrPtq` runs QAT and, when QAT cannot cover the model, falls back to PTQ (int8, or int4
kernels after int4 QAT) and says why in the stage's notes.
"""

from __future__ import annotations

import logging
from typing import Callable

from mobile_opt.errors import MobileOptError
from mobile_opt.stage import Stage, StageContext, StageOutput

__all__ = ["Scheduled", "QatOrPtq"]

logger = logging.getLogger(__name__)


class Scheduled(Stage):
    """Runs `inner` with `epochs` of fine-tuning; `watch(kind, output, ctx)` runs after it."""

    def __init__(self, inner: Stage, epochs: int, watch: Callable[[str, StageOutput, StageContext], None] | None = None):
        self.inner, self.epochs, self.watch = inner, epochs, watch
        self.kind = inner.kind

    @property
    def trains(self) -> bool:  # type: ignore[override]
        return self.inner.trains

    def params(self) -> dict:
        return {**self.inner.params(), "fine_tune_epochs": self.epochs}

    def apply(self, model, ctx: StageContext) -> StageOutput:
        saved, ctx.epochs = ctx.epochs, self.epochs
        try:
            out = self.inner.apply(model, ctx)
        finally:
            ctx.epochs = saved
        if self.watch is not None:
            self.watch(self.kind, out, ctx)
        return out


class QatOrPtq(Stage):
    """QAT (skipping `skip_layers`); the PTQ stage `ptq` with the reason noted when QAT fails."""

    kind = "quantize"

    def __init__(self, qat: Stage, ptq: Stage):
        self.qat, self.ptq = qat, ptq
        self.used = qat

    @property
    def trains(self) -> bool:  # type: ignore[override]
        return True

    def params(self) -> dict:
        return {**self.used.params(), "fallback": self.ptq.params()["mode"]}

    def apply(self, model, ctx: StageContext) -> StageOutput:
        try:
            return self.qat.apply(model, ctx)
        except (MobileOptError, ValueError, TypeError) as exc:  # TF-MOT raises plain ValueError/TypeError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            fallback = self.ptq.params()["mode"]
            logger.info("QAT cannot cover the model (%s); falling back to %s", reason, fallback)
            self.used = self.ptq
            out = self.ptq.apply(model, ctx)
            note = f"QAT could not cover the model ({type(exc).__name__}: {reason}); fell back to {fallback}"
            return StageOutput(out.model, out.checks, out.kernels, (note, *out.notes), out.tflite, out.accuracy)
