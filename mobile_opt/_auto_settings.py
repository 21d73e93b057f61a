"""`AutoSettings`: what `auto_optimize` searches for and how, validated before any model work.

Example:
    >>> AutoSettings(size_budget="50KB", level=2).constraints.size_budget
    50000
    >>> AutoSettings(level=2).total_trials
    16
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobile_opt._auto_choice import Constraints
from mobile_opt._checks import check_number
from mobile_opt.errors import InputError

__all__ = ["AutoSettings"]

# Trials per level, when n_trials is not given.
_TRIALS = {1: 6, 2: 16, 3: 40}


@dataclass(frozen=True)
class AutoSettings:
    """The budgets, the length of the search, the study and where files go.

    Args:
        max_accuracy_drop: tolerated top-1 drop in percentage points (default 0.5).
        size_budget: largest size (of the `size` measure): bytes, or "50KB", "1.5MB", "64KiB"
            (default None).
        latency_budget: largest median latency on the device: ms, or "5ms", "800us"
            (default None; needs a device).
        size: the size auto minimises and `size_budget` bounds: "raw" (the .tflite's bytes as
            shipped: apps store it uncompressed so LiteRT can mmap it), "zip" (the file deflated
            as an APK entry: what a download costs) or "coded" (Deep Compression's Huffman +
            sparse estimate, which no runtime loads) (default "raw"). All three are recorded.
        level: 1, 2 or 3: more trials (6/16/40) and longer fine-tuning (prune, cluster,
            QAT epochs: 2/1/1, 5/2/2, 10/3/3) (default 1).
        n_trials: total trials the study should hold (default None: by level); a resumed
            study only runs the missing ones.
        timeout_s: stop starting new trials after this many seconds (default None).
        seed: sampler seed (default 0).
        storage: an Optuna storage URL ("sqlite:///study.db", "postgresql://...");
            default None: `sqlite:///<output_dir>/study.db` when `output_dir` is given,
            else in memory (not resumable). Workers on several machines share a study
            through one PostgreSQL URL (`pip install 'mobile-opt[postgres]'`).
        study_name: the study to create or resume (default None: "auto-<model name>").
        artifact_store: where trial models go so that every worker can fetch the chosen
            one: a directory (an Optuna FileSystemArtifactStore; on a shared mount for
            several machines) or any Optuna artifact store, e.g.
            `optuna.artifacts.Boto3ArtifactStore("bucket")` for S3 (default None: trial
            models stay in this worker's output_dir; needs output_dir).
        output_dir: where trial models, the chosen model (.tflite + .keras), report.md,
            pareto.json and pareto.png go (default None: nothing written).

    Attributes:
        constraints: the budgets in bytes and ms (`Constraints`).
        total_trials: `n_trials`, else the level's number.

    Raises:
        ConstraintError: a negative drop, a non-positive budget, unknown units or an unknown size.
        InputError: level, n_trials, timeout_s or seed out of range; artifact_store
            without output_dir.
    """

    max_accuracy_drop: float = 0.5
    size_budget: int | str | None = None
    latency_budget: float | str | None = None
    size: str = "raw"
    level: int = 1
    n_trials: int | None = None
    timeout_s: float | None = None
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    artifact_store: Any = None
    output_dir: str | Path | None = None
    constraints: Constraints = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "constraints",
                           Constraints.parse(self.max_accuracy_drop, self.size_budget, self.latency_budget, self.size))
        if isinstance(self.level, bool) or self.level not in _TRIALS:
            raise InputError(f"level must be 1, 2 or 3. Received: level={self.level!r}.")
        check_number("n_trials", self.n_trials, at_least=1, integer=True, optional=True)
        check_number("timeout_s", self.timeout_s, above=0, optional=True, hint="(seconds)")
        check_number("seed", self.seed, at_least=0, integer=True)
        if self.output_dir is not None:
            object.__setattr__(self, "output_dir", Path(self.output_dir))
        elif self.artifact_store is not None:
            raise InputError("artifact_store needs output_dir (trial models are written there first). "
                             f"Received: artifact_store={self.artifact_store!r}, output_dir=None.")

    @property
    def total_trials(self) -> int:
        return self.n_trials or _TRIALS[self.level]
