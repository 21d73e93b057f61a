"""Shared studies: 1 vs 2 `mobile-opt auto` workers on one PostgreSQL study.

Each configuration searches a fresh study with the same total of trials; the workers are
separate processes sharing a throwaway PostgreSQL 15 server (started like the tests do)
and one artifact directory. Reported per configuration: trials per hour (finished trials
over the span from the first trial's start to the last one's end, from the study's own
timestamps, so process start-up is not counted), the wall time of the whole command, and
the study's best (smallest feasible coded size) at equal wall time (the shorter of the two
spans), with the machine's load average before and after.

    python bench/shared_study.py [--trials 6]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results") / "shared_study.json"


def _postgres_helpers():
    # One implementation of "start a throwaway PostgreSQL": the tests' (tests/mobile_opt/conftest.py).
    spec = importlib.util.spec_from_file_location("_mobile_opt_test_conftest", ROOT / "tests/mobile_opt/conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _job(root: Path) -> None:
    from mobile_opt import _tf
    from mobile_opt.datasets import load_fashion_mnist

    keras = _tf.keras()
    (x, y), (xt, yt) = load_fashion_mnist()
    x, y, xt, yt = x[:1000] / 255.0, y[:1000], xt[:300] / 255.0, yt[:300]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")],
                             name="tiny")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    model.save(root / "tiny.keras")
    np.savez(root / "data.npz", x_train=x.astype(np.float32), y_train=y, x_val=xt.astype(np.float32), y_val=yt)


def _search(root: Path, url: str, workers: int, trials: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MOBILE_OPT_ARTIFACTS": str(root / f"artifacts{workers}")}
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "mobile_opt.cli", "auto", str(root / "tiny.keras"),
                               "--data", str(root / "data.npz"), "--max-accuracy-drop", "3", "--trials", str(trials),
                               "--storage", url, "--study-name", "bench", "--seed", str(i),
                               "--out", str(root / f"out{workers}-{i}"), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
             for i in range(workers)]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.monotonic() - started
    if any(p.returncode not in (0, 1) for p in procs):
        raise SystemExit(f"a worker failed: {[p.returncode for p in procs]}")
    import optuna

    study = optuna.load_study(study_name="bench", storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    t0 = min(t.datetime_start for t in done)
    span = (max(t.datetime_complete for t in done) - t0).total_seconds()
    chosen = {json.loads(o)["chosen"]["number"] if json.loads(o)["chosen"] else None for o in outputs}
    return {"workers": workers, "trials": len(done), "wall_s": round(wall, 1), "span_s": round(span, 1),
            "trials_per_hour": round(len(done) / span * 3600, 1),
            "workers_that_measured": len({t.user_attrs.get("worker") for t in done}),
            "same_choice_in_every_worker": len(chosen) == 1,
            "_finished": [((t.datetime_complete - t0).total_seconds(), t.user_attrs.get("coded_bytes"),
                           t.user_attrs.get("accuracy_drop_pp")) for t in done]}


def _best_within(run: dict, seconds: float, max_drop: float = 3.0) -> int | None:
    sizes = [b for s, b, d in run["_finished"] if s <= seconds and b is not None and d is not None and d <= max_drop]
    return min(sizes) if sizes else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    helpers = _postgres_helpers()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="shared-study-") as tmp, helpers.running_postgres() as pg:
        root = Path(tmp)
        _job(root)
        runs = [_search(root, pg.create_database(f"bench{n}"), n, args.trials) for n in (1, 2)]
    load_after = os.getloadavg()
    equal = min(r["span_s"] for r in runs)
    for r in runs:
        r["best_coded_bytes_at_equal_wall_time"] = _best_within(r, equal)
        del r["_finished"]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python bench/shared_study.py --trials {args.trials}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_before_after": [round(load_before[0], 1), round(load_after[0], 1)],
        "equal_wall_time_s": equal,
        "runs": runs,
        "speedup_trials_per_hour": round(runs[1]["trials_per_hour"] / runs[0]["trials_per_hour"], 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
