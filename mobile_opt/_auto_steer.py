"""How `auto_optimize` steers its study: which recipe to measure next, before TPE's own proposals.

Kept apart from the study plumbing (`_auto_study`) and the choice of the result
(`_auto_choice`): this is search policy, the part most likely to grow.
"""

from __future__ import annotations

import logging

from mobile_opt import _auto_study as study_io
from mobile_opt._auto_choice import Constraints
from mobile_opt._search_space import SearchSpace

__all__ = ["Steer"]

logger = logging.getLogger(__name__)


class Steer:
    """After each trial, queues the next recipe worth measuring before TPE's own proposals:
    a more aggressive neighbour of the smallest feasible candidate (by the size measure; spending the accuracy
    headroom), or, while nothing is feasible, a neighbour of the closest one: with more
    filters removed when it is too slow, else a gentler one."""

    def __init__(self, search: SearchSpace, constraints: Constraints, total: int):
        self.search, self.constraints, self.total = search, constraints, total

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        # One queued recipe at a time, and none once the study holds its total (shared
        # studies: a queued trial no worker will run would be left WAITING).
        if any(t.state == TrialState.WAITING for t in trials) or study_io.finished(study, running=True) >= self.total:
            return
        tried = {_key(t.params) for t in trials} | {_key(t.system_attrs.get("fixed_params", {})) for t in trials}
        size_of = self.constraints.size_of
        measured = [t for t in trials if t.state == TrialState.COMPLETE and size_of(t.user_attrs) is not None]
        feasible = [t for t in measured if not self.constraints.violations(t.user_attrs)]
        if feasible:
            best = min(feasible, key=lambda t: (size_of(t.user_attrs), t.user_attrs["accuracy_drop_pp"]))
            slack = 1 - self.constraints.drop_bound(best.user_attrs) / max(self.constraints.max_accuracy_drop, 1e-9)
            options = []
            for push in self.search.pushes(dict(best.params), slack):
                options.append(push)
                # A push that was tried and missed: bisect between the best and it.
                if _key(push) in tried and (mid := self.search.between(dict(best.params), push)) is not None:
                    options.append(mid)
        elif measured:
            closest = min(measured, key=lambda t: self.constraints.closeness(self.constraints.violations(t.user_attrs)))
            # Too slow: remove work (filters); otherwise compress less.
            slow = "latency_ms" in self.constraints.violations(closest.user_attrs)
            step = (self.search.faster if slow else self.search.relax)(dict(closest.params))
            options = [step] if step is not None else []
        else:
            options = []
        for params in options:
            if _key(params) not in tried:
                logger.info("next: %s", params)
                study.enqueue_trial(params)
                return


def _key(params: dict) -> tuple:
    return tuple(sorted((k, round(v, 4) if isinstance(v, float) else v) for k, v in params.items()))
