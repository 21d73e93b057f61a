"""Benchmarks on a farm of devices: every device at once, one thread each.

Each (device, model) is one *job*: `run(device, [model])` benchmarks one model on one device
(every backend and thread count) and returns its results. By default every device measures
every model; with `shard=True` the models are spread over the devices of each *group*
(same `ro.product.model` and ABI), so each group measures each model once.

A device that disconnects loses only its in-flight job: after a job whose runs failed, the
device is probed (`echo ok`); a device that does not answer is dropped. With `retries=N` its
in-flight job, and the jobs still queued for it, move to another healthy device of the same
group (at most N moves per job); otherwise they are reported as not run. Nothing is silently
dropped: every job ends as results, or in `FarmResult.unrun` with the reason.

Example:
    farm = run_farm(devices, models, lambda d, ms: benchmark(d, ms), shard=True, retries=1)
    write_jsonl(Path("results.jsonl"), farm.results)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mobile_opt._checks import check_number
from mobile_opt.errors import DeviceError, InputError

__all__ = ["FarmResult", "run_farm"]

logger = logging.getLogger(__name__)

Run = Callable[[Any, list], list]


@dataclass(frozen=True)
class FarmResult:
    """What a farm run measured.

    Attributes:
        results: every job's `BenchmarkResult`s, in device then model order; each names the
            device that measured it (`device["serial"]`), and a moved job says so in `warnings`.
        lost: {serial: why} for the devices dropped during the run.
        unrun: (serial it was meant for, model path, why) for jobs no device could run.
    """

    results: tuple
    lost: dict
    unrun: tuple[tuple[str, str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unrun

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results], "lost": dict(self.lost),
                "unrun": [list(u) for u in self.unrun]}


@dataclass
class _Job:
    model: Path
    index: int  # model order, for a stable result order
    owner: str  # serial it was first meant for
    moves: int = 0
    history: tuple[str, ...] = ()


def _default_alive(device) -> bool:
    from device_bench.bench import _alive

    return _alive(device)


def _group(device) -> tuple:
    info = device.info()
    return (info.model, info.abi)


def run_farm(devices: Sequence[Any], models: Sequence[Path], run: Run, *, shard: bool = False,
             retries: int = 0, on_results: Callable[[list], None] | None = None,
             progress: Callable[[int, int], None] | None = None,
             alive: Callable[[Any], bool] = _default_alive) -> FarmResult:
    """Runs every model on the devices, concurrently (one thread per device).

    Args:
        devices: open devices (`device_bench.Device`); serials must differ.
        models: .tflite paths.
        run: `run(device, [model]) -> list[BenchmarkResult]` (e.g. `benchmark` with its settings).
        shard: spread the models over the devices of each group instead of repeating them.
        retries: how many times a job may move to another device of its group after its
            device was lost (default 0).
        on_results: called with each job's results as it completes (e.g. to append to a file).
        progress: `progress(jobs_done, jobs_total)`.
        alive: health probe run after a job with failed runs (default: `echo ok` over the shell).

    Returns:
        FarmResult.

    Raises:
        InputError: no devices or models, duplicate serials, negative retries.
    """
    serials = [d.serial for d in devices]
    if not devices or not models:
        raise InputError(f"run_farm needs devices and models. Received: devices={serials}, models={list(models)}")
    if len(set(serials)) != len(serials):
        raise InputError(f"each device may be given once. Received: serials={serials}")
    check_number("retries", retries, at_least=0, integer=True)
    return _Farm(devices, [Path(m) for m in models], run, shard, retries, on_results, progress, alive).run()


class _Farm:
    def __init__(self, devices, models, run, shard, retries, on_results, progress, alive):
        self.devices, self.run_one, self.retries = list(devices), run, retries
        self.on_results, self.progress, self.alive = on_results, progress, alive
        self.cond = threading.Condition()
        self.lost: dict[str, str] = {}
        self.unrun: list[tuple[str, str, str]] = []
        self.results: list[tuple[int, int, list]] = []  # (device order, model order, results)
        self.order = {d.serial: i for i, d in enumerate(self.devices)}
        self.group: dict[str, tuple] = {}
        for device in self.devices:
            try:
                self.group[device.serial] = _group(device)
            except DeviceError as exc:
                self.group[device.serial] = ("unknown", device.serial)
                self.lost[device.serial] = f"not reachable at the start: {exc}"
        self.own: dict[str, deque] = {d.serial: deque() for d in self.devices}
        self.shared: dict[tuple, deque] = {g: deque() for g in self.group.values()}
        self.inflight: dict[tuple, int] = {g: 0 for g in self.group.values()}
        if shard:
            groups: dict[tuple, list[str]] = {}
            for serial, group in self.group.items():
                groups.setdefault(group, []).append(serial)
            for group, members in groups.items():
                self.shared[group].extend(_Job(m, i, members[i % len(members)]) for i, m in enumerate(models))
        else:
            for serial in self.own:
                self.own[serial].extend(_Job(m, i, serial) for i, m in enumerate(models))
        self.total = sum(map(len, self.own.values())) + sum(map(len, self.shared.values()))
        self.done = 0
        self.error: BaseException | None = None  # not a device loss (bad model, no binary): stops all
        for serial, why in list(self.lost.items()):
            self._drop(serial, why, None)

    def run(self) -> FarmResult:
        threads = [threading.Thread(target=self._work, args=(d,), name=f"bench-{d.serial}", daemon=True)
                   for d in self.devices if d.serial not in self.lost]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.error is not None:
            raise self.error
        ordered = sorted(self.results, key=lambda r: (r[0], r[1]))
        return FarmResult(results=tuple(r for _, _, rs in ordered for r in rs), lost=dict(self.lost),
                          unrun=tuple(sorted(self.unrun)))

    def _next(self, serial: str) -> _Job | None:
        group = self.group[serial]
        with self.cond:
            while True:
                if serial in self.lost or self.error is not None:
                    return None
                queue = self.own[serial] or self.shared[group]
                if queue:
                    self.inflight[group] += 1
                    return queue.popleft()
                # Work still held by others of the group may come back if their device is lost.
                held = self.inflight[group] + sum(len(self.own[s]) for s, g in self.group.items()
                                                  if g == group and s not in self.lost)
                if held == 0:
                    return None
                self.cond.wait()

    def _work(self, device) -> None:
        serial = device.serial
        while (job := self._next(serial)) is not None:
            try:
                results = self.run_one(device, [job.model])
                error = None
            except DeviceError as exc:
                results, error = [], exc
            except BaseException as exc:
                with self.cond:
                    self.inflight[self.group[serial]] -= 1
                    self.error = self.error or exc
                    self.cond.notify_all()
                return
            lost = error is not None or (any(r.status == "failed" for r in results) and not self.alive(device))
            with self.cond:
                self.inflight[self.group[serial]] -= 1
                if lost:
                    why = f"lost while measuring {job.model.name}" + (f": {error}" if error else "")
                    logger.warning("%s %s", serial, why)
                    self._drop(serial, why, (job, results))
                else:
                    self._keep(serial, job, results)
                self.cond.notify_all()

    def _keep(self, serial: str, job: _Job, results: list) -> None:
        if job.history:
            note = f"measured on {serial} after {', '.join(job.history)} was lost"
            results = [dataclasses.replace(r, warnings=(*r.warnings, note)) for r in results]
        self.results.append((self.order[serial], job.index, results))
        self._finished(results)

    def _finished(self, results: list) -> None:
        self.done += 1
        if results and self.on_results is not None:
            self.on_results(results)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _drop(self, serial: str, why: str, in_flight: tuple[_Job, list] | None) -> None:
        """Marks `serial` lost; its in-flight and queued jobs move on or are given up (lock held)."""
        self.lost[serial] = why
        group = self.group[serial]
        healthy = [s for s, g in self.group.items() if g == group and s not in self.lost]
        jobs = [in_flight] if in_flight is not None else []
        jobs += [(job, []) for job in self.own[serial]]
        self.own[serial].clear()
        if not healthy:  # nobody is left to take the group's shared jobs either
            jobs += [(job, []) for job in self.shared[group]]
            self.shared[group].clear()
        for job, results in jobs:
            if healthy and job.moves < self.retries:
                job.moves += 1
                job.history += (serial,)
                self.shared[group].append(job)
                logger.warning("moving %s from %s to another %s", job.model.name, serial, group[0])
            elif results:
                self.results.append((self.order[serial], job.index, results))  # its failed runs say why
                self._finished(results)
            else:
                reason = f"{serial} {why}" + ("" if healthy else f"; no healthy {group[0]} left")
                self.unrun.append((job.owner, str(job.model), reason))
                self._finished([])
