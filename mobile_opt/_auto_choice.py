"""Which candidate `auto_optimize` picks: the constraints, feasibility, the Pareto front.

Pure (no Optuna calls except reading a study's trials in `candidates_of`), tested on its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from device_bench.intervals import ms
from mobile_opt._checks import check_number
from mobile_opt.errors import ConstraintError

__all__ = ["Candidate", "Constraints", "SIZES", "SIZE_BEFORE_CHOICE", "candidates_of", "choose", "pareto_front"]

# The sizes auto can minimise and bound, each recorded for every trial as "<measure>_bytes":
# raw is the .tflite as shipped (apps store it uncompressed so LiteRT can mmap it), zip the
# file deflated as an APK entry (what a download costs), coded Deep Compression's estimate
# (Huffman + sparse indices), which no runtime loads.
SIZES = {"raw": ".tflite size as shipped", "zip": "zipped size (APK download)",
         "coded": "coded size (Deep Compression estimate)"}
# What studies and pareto.json files from before the choice of size minimised.
SIZE_BEFORE_CHOICE = "coded"


# A candidate's accuracy drop counts as its measured drop plus this many standard errors of the
# paired difference on the validation data. Choosing the smallest of many candidates whose drops
# merely look within budget picks the ones the validation split flattered (the winner's curse:
# +0.3 to +0.8 pp on the test set on Fashion-MNIST LeNets with a 5,000-image split).
MARGIN_STANDARD_ERRORS = 1.0


@dataclass(frozen=True)
class Constraints:
    """The budgets a search runs under (validated; use `Constraints.parse` for user units).

    The accuracy budget holds for a record whose drop plus `MARGIN_STANDARD_ERRORS` standard
    errors (its `accuracy_drop_se_pp`, 0 when not recorded) is within it.

    Attributes:
        max_accuracy_drop: tolerated top-1 loss in percentage points (>= 0).
        size_budget: largest size in bytes (of the `size` measure), or None.
        latency_budget_ms: largest median latency in ms, or None.
        size: the size minimised and bounded: "raw" (.tflite bytes as shipped, the default),
            "zip" (deflated as an APK entry) or "coded" (Deep Compression estimate).

    Example:
        >>> Constraints.parse(0.5, size_budget="50k").size_budget
        50000
    """

    max_accuracy_drop: float
    size_budget: int | None = None
    latency_budget_ms: float | None = None
    size: str = "raw"

    def __post_init__(self) -> None:
        if not isinstance(self.size, str) or self.size not in SIZES:
            raise ConstraintError(f"size must be one of {', '.join(map(repr, SIZES))} (raw: .tflite bytes as "
                                  "shipped; zip: APK download; coded: Deep Compression estimate). "
                                  f"Received: size={self.size!r}.")
        drop = check_number("max_accuracy_drop", self.max_accuracy_drop, at_least=0, error=ConstraintError,
                            hint="(the tolerated accuracy loss in percentage points: 0.5 = half a point)")
        check_number("size_budget", self.size_budget, above=0, integer=True, optional=True,
                     hint="(bytes)", error=ConstraintError)
        check_number("latency_budget_ms", self.latency_budget_ms, above=0, optional=True, error=ConstraintError)
        object.__setattr__(self, "max_accuracy_drop", float(drop))

    @classmethod
    def parse(cls, max_accuracy_drop, size_budget=None, latency_budget=None, size="raw") -> "Constraints":
        """From user units: sizes as in `converters.parse_size` ("50KB", "50k", "64KiB"), times "5ms"."""
        from converters.budget import parse_size
        from mobile_opt._search_space import parse_latency
        from mobile_opt.errors import InputError

        budget = None
        if size_budget is not None:
            try:
                budget = parse_size(size_budget, "size_budget")
            except InputError as exc:  # the same message, under the error auto's callers catch
                raise ConstraintError(str(exc)) from exc
        return cls(max_accuracy_drop, budget, parse_latency(latency_budget, "latency_budget"), size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Constraints":
        """From `to_dict()`'s output; one written before `size` existed was "coded"."""
        return cls(**{"size": SIZE_BEFORE_CHOICE, **data})

    @property
    def size_key(self) -> str:
        """The record key of the size measure: "raw_bytes", "zip_bytes" or "coded_bytes"."""
        return f"{self.size}_bytes"

    def size_of(self, item) -> int | None:
        """The measured size of a record (a trial's attributes) or a `Candidate`."""
        return item.get(self.size_key) if isinstance(item, dict) else getattr(item, self.size_key)

    @staticmethod
    def drop_bound(record: dict) -> float:
        """The accuracy drop a record is judged by: measured + the margin of standard errors."""
        return record["accuracy_drop_pp"] + MARGIN_STANDARD_ERRORS * record.get("accuracy_drop_se_pp", 0.0)

    def values(self, record: dict) -> list[float]:
        """Optuna constraint values (<= 0 is feasible) for a measured record."""
        values = [self.drop_bound(record) - self.max_accuracy_drop]
        if self.size_budget is not None:
            values.append(float(self.size_of(record) - self.size_budget))
        if self.latency_budget_ms is not None:
            latency = record.get("latency_ms")
            values.append(math.inf if latency is None else latency - self.latency_budget_ms)
        return values

    def violations(self, record: dict) -> dict:
        """By how much each constraint failed (None: latency not measured); {} when feasible."""
        out = {}
        if self.drop_bound(record) > self.max_accuracy_drop + 1e-9:
            out["accuracy_drop_pp"] = self.drop_bound(record) - self.max_accuracy_drop
        if self.size_budget is not None and self.size_of(record) > self.size_budget:
            out[self.size_key] = self.size_of(record) - self.size_budget
        if self.latency_budget_ms is not None:
            latency = record.get("latency_ms")
            if latency is None or latency > self.latency_budget_ms:
                out["latency_ms"] = None if latency is None else latency - self.latency_budget_ms
        return out

    def closeness(self, violations: dict) -> float:
        """Relative distance to feasibility, each violated constraint scaled by its budget."""
        total = 0.0
        for key, over in violations.items():
            if over is None:
                total += 10.0
            elif key == "accuracy_drop_pp":
                total += over / max(self.max_accuracy_drop, 0.1)
            elif key == self.size_key:
                total += over / self.size_budget
            else:
                total += over / self.latency_budget_ms
        return total

    def describe(self) -> str:
        parts = [f"accuracy drop + {MARGIN_STANDARD_ERRORS:g} s.e. <= {self.max_accuracy_drop} pp"]
        if self.size_budget is not None:
            parts.append(f"{SIZES[self.size]} <= {self.size_budget:,} B")
        if self.latency_budget_ms is not None:
            parts.append(f"latency <= {self.latency_budget_ms} ms")
        return ", ".join(parts)


@dataclass(frozen=True)
class Candidate:
    """One measured recipe (an Optuna trial).

    Attributes:
        number: the trial number in the study.
        recipe: what was applied (per-layer sparsity, cluster bits, quantization mode).
        stages: each stage's report (kind, params, accuracy, checks, notes).
        accuracy: top-1 of the .tflite on the validation data (LiteRT).
        accuracy_drop_pp: baseline .tflite accuracy minus `accuracy`, in pp.
        accuracy_drop_se_pp: its standard error (paired, same samples), or None.
        coded_bytes / raw_bytes / zip_bytes: `converters.analyze` sizes of the .tflite (zip is
            None for trials stored before it was recorded).
        latency_ms: median latency on the device, None when no device (or not measured;
            `latency_note` says why).
        feasible: every constraint held; `violations` says by how much each failed.
        checks_ok: every stage verified what it promised.
        error: why the trial failed (then the numbers are None).
    """

    number: int
    recipe: dict
    stages: tuple = ()
    accuracy: float | None = None
    accuracy_drop_pp: float | None = None
    accuracy_drop_se_pp: float | None = None
    coded_bytes: int | None = None
    raw_bytes: int | None = None
    zip_bytes: int | None = None
    latency_ms: float | None = None
    latency_note: str | None = None
    feasible: bool = False
    violations: dict = field(default_factory=dict)
    checks_ok: bool = False
    seconds: float | None = None
    tflite_path: str | None = None
    keras_path: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stages"] = list(self.stages)
        return data


def candidates_of(study, constraints: Constraints) -> list[Candidate]:
    """Every finished trial of `study` as a Candidate (failed ones with their error)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.state == TrialState.COMPLETE and constraints.size_of(attrs) is not None:
            violations = constraints.violations(attrs)
            out.append(Candidate(
                number=t.number, recipe=attrs.get("recipe", {}), stages=tuple(attrs.get("stages", ())),
                accuracy=attrs["accuracy"], accuracy_drop_pp=attrs["accuracy_drop_pp"],
                accuracy_drop_se_pp=attrs.get("accuracy_drop_se_pp"), coded_bytes=attrs["coded_bytes"], raw_bytes=attrs["raw_bytes"],
                zip_bytes=attrs.get("zip_bytes"),
                latency_ms=attrs.get("latency_ms"), latency_note=attrs.get("latency_note"),
                feasible=not violations, violations=violations, checks_ok=attrs.get("checks_ok", False),
                seconds=attrs.get("seconds"), tflite_path=attrs.get("tflite_path"),
                keras_path=attrs.get("keras_path"),
            ))
        elif t.state in (TrialState.FAIL, TrialState.PRUNED):
            out.append(Candidate(number=t.number, recipe=attrs.get("recipe", dict(t.params)),
                                 error=attrs.get("error", "failed (no message recorded)")))
    return out


def pareto_front(candidates, with_latency: bool, constraints: Constraints) -> list[Candidate]:
    """Measured candidates no other candidate beats on every objective: accuracy drop, the
    `constraints.size` measure (and latency)."""
    def objectives(c: Candidate) -> tuple:
        latency = (c.latency_ms if c.latency_ms is not None else math.inf,) if with_latency else ()
        return (c.accuracy_drop_pp, constraints.size_of(c)) + latency

    measured = [c for c in candidates if c.error is None]
    front = []
    for c in measured:
        a = objectives(c)
        dominated = any(all(x <= y for x, y in zip(objectives(o), a)) and any(x < y for x, y in zip(objectives(o), a))
                        for o in measured if o is not c)
        if not dominated:
            front.append(c)
    return sorted(front, key=lambda c: (constraints.size_of(c), c.accuracy_drop_pp))


def choose(candidates: list[Candidate], constraints: Constraints, baseline_raw_bytes: int):
    """`(chosen, closest, message)`: the smallest feasible candidate by `constraints.size` (the
    fastest when only a latency budget is given), or None with the three candidates nearest to
    feasibility."""
    feasible = [c for c in candidates if c.feasible]
    if feasible:
        if constraints.latency_budget_ms is not None and constraints.size_budget is None:
            chosen = min(feasible, key=lambda c: (c.latency_ms, constraints.size_of(c), c.accuracy_drop_pp))
            by = "latency"
        else:
            chosen = min(feasible, key=lambda c: (constraints.size_of(c), c.accuracy_drop_pp))
            by = SIZES[constraints.size]
        # The headline is what ships (.tflite bytes), whichever size the search minimised.
        message = (f"Chose trial {chosen.number} (by {by}): "
                   f"{chosen.raw_bytes:,} B .tflite "
                   f"({baseline_raw_bytes / chosen.raw_bytes:.1f}× smaller than fp32 as shipped), "
                   + (f"{chosen.zip_bytes:,} B zipped, " if chosen.zip_bytes is not None else "")
                   + f"{chosen.coded_bytes:,} B coded estimate ({baseline_raw_bytes / chosen.coded_bytes:.1f}×), "
                   f"accuracy drop {chosen.accuracy_drop_pp:+.2f} pp"
                   + (f" ± {chosen.accuracy_drop_se_pp:.2f} (s.e.)" if chosen.accuracy_drop_se_pp is not None else "")
                   + (f", {ms(chosen.latency_ms, from_ms=True)} ms" if chosen.latency_ms is not None else "")
                   + f"; {len(feasible)} of {len(candidates)} candidates met the constraints.")
        return chosen, (), message
    measured = [c for c in candidates if c.error is None]
    closest = tuple(sorted(measured, key=lambda c: constraints.closeness(c.violations))[:3])
    message = (f"No candidate met the constraints ({constraints.describe()}) in {len(candidates)} trial(s)."
               + (" The closest ones are listed; relax a budget or search longer (higher level)."
                  if closest else " No candidate could be measured."))
    return None, closest, message
