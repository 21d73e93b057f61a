"""Diagnostic for issue 12: auto's chosen MobileNetV2 recipe with per-tensor int8 PTQ.

Not an unaided `auto` result: it takes `bench/real_models.py`'s chosen recipe (per-layer
sparsity and cluster bits, from `bench/results/real_models.json`), trains the same model the
same way (seed 0, so the same fp32 .tflite accuracy), and swaps its quantization for
`quantize("ptq_int8", per_channel=False)`, to show what the per-channel quantization
parameters cost in coded size.

    python bench/per_tensor_diagnostic.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import real_models as rm  # noqa: E402

import converters  # noqa: E402
from mobile_opt import Pipeline, _tf, cluster, prune, quantize  # noqa: E402
from mobile_opt._auto_stages import Scheduled  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    started = time.perf_counter()
    keras = _tf.keras()
    keras.utils.set_random_seed(rm.SEED)
    source = json.loads((RESULTS / "real_models.json").read_text())
    (x, y), val, test = rm._load()
    model = rm._build()
    for layer in model.layers:  # as real_models.py trains it
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=source["train_epochs"], batch_size=128, verbose=0)
    recipe, n = source["auto"]["recipe"], source["auto"]["train_samples"]
    epochs = recipe["fine_tune_epochs"]
    stages = [Scheduled(prune(recipe["sparsity"], schedule="polynomial", learning_rate=1e-3), epochs["prune"]),
              Scheduled(cluster({k: 2**v for k, v in recipe["cluster_bits"].items()}, learning_rate=1e-4),
                        epochs["cluster"]),
              quantize("ptq_int8", per_channel=False)]
    result = Pipeline(stages).run(model, (x[:n], y[:n]), val)
    base = converters.evaluate(converters.convert(model), test, per_sample=True)
    final = converters.evaluate(result.tflite, test, per_sample=True)
    size = converters.analyze(result.tflite)
    drop, se = converters.paired_drop(base.correct, final.correct)
    rows = source["rows"]
    out = {
        "benchmark": "per_tensor_diagnostic",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/per_tensor_diagnostic.py",
        "recipe_from": f"bench/results/real_models.json ({source['date']}), trial {source['auto']['chosen_trial']}",
        "raw_bytes": size.raw_bytes, "coded_bytes": size.coded_bytes, "non_weight_bytes": size.non_weight_bytes,
        "fp32_test_accuracy": base.accuracy, "test_accuracy": final.accuracy,
        "drop_pp_vs_fp32": drop, "drop_pp_standard_error": se,
        "coded_vs_fp32": rows["fp32"]["coded_bytes"] / size.coded_bytes,
        "coded_vs_ptq": rows["ptq_int8"]["coded_bytes"] / size.coded_bytes,
        "checks_ok": result.stages[-1].ok,
        "minutes": (time.perf_counter() - started) / 60,
    }
    (RESULTS / "per_tensor_diagnostic.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
