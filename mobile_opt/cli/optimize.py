"""`mobile-opt optimize`: run a compression recipe on a saved Keras model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mobile_opt.cli._common import FiniteFloatRange, console, handle_errors, data_options, load_data, print_json
from mobile_opt.cli._pipeline_view import epoch_progress, print_pipeline_result
from mobile_opt._provenance import provenance


def _parse_bits(value: str | None) -> dict | None:
    """--bits "fc1=4,fc2=8" -> {"fc1": 4, "fc2": 8}; the stage checks the widths."""
    from mobile_opt.errors import RecipeError

    if value is None:
        return None
    bits = {}
    for item in value.split(","):
        layer, sep, width = item.partition("=")
        if not sep or not layer.strip() or not width.strip().lstrip("-").isdigit():
            raise RecipeError(f"--bits takes LAYER=BITS pairs separated by commas, e.g. fc1=4,fc2=8. "
                              f"Received: {item!r} in --bits {value!r}.")
        bits[layer.strip()] = int(width)
    return bits


def _recipe_from_flags(prune, prune_schedule, prune_structure, cluster, quantize, bits=None, fold=False) -> dict:
    stages = [{"kind": "fold_batchnorm"}] if fold else []
    if prune is not None or prune_structure == "2:4":
        stages.append({"kind": "prune", "sparsity": prune, "schedule": prune_schedule, "structure": prune_structure})
    if cluster is not None:
        stages.append({"kind": "cluster", "clusters": cluster})
    if quantize is not None:
        stages.append({"kind": "quantize", "mode": quantize, **({"bits": bits} if bits else {})})
    return {"stages": stages}


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--recipe", type=click.Path(path_type=Path), help="Recipe TOML (see README). Overrides the stage flags.")
@click.option("--fold-batchnorm", "fold", is_flag=True,
              help="Fold BatchNormalization into the layer before it first, so clusters ship as clustered.")
@click.option("--prune", type=FiniteFloatRange(), help="Prune to this sparsity (0.8 = 80% zeros).")
@click.option("--prune-schedule", type=click.Choice(["constant", "polynomial"]), default="constant", show_default=True)
@click.option("--prune-structure", type=click.Choice(["unstructured", "2:4"]), default="unstructured", show_default=True)
@click.option("--cluster", type=int, help="Cluster each kernel to this many shared values.")
@click.option("--quantize", type=click.Choice(["ptq_int8", "int4_fc", "dynamic", "float16", "qat_int8", "qat_int4"]),
              help="int4_fc: int4 Dense kernels (ai-edge-quantizer), int8 elsewhere; qat_int4: the same after 4-bit QAT.")
@click.option("--bits", help="Kernel bits per layer for ptq_int8/int4_fc, e.g. fc1=4,fc2=8.")
@data_options
@click.option("--epochs", "fine_tune_epochs", type=click.IntRange(min=0), help="Fine-tuning epochs per stage [recipe or 2].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size [recipe or 128].")
@click.option("--max-accuracy-drop", type=FiniteFloatRange(min=0), help="Tolerated accuracy drop in percentage points.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to save the optimized model (.keras, .h5 or a directory for SavedModel).")
@click.option("--tflite", type=click.Path(path_type=Path), help="Also write the converted .tflite (the quantized one when the recipe quantizes, else fp32).")
@click.option("--summary", type=click.Path(path_type=Path), help="Write the JSON summary here [OUTPUT + .json].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
@handle_errors
def optimize(model_path, recipe, fold, prune, prune_schedule, prune_structure, cluster, quantize, bits, data,
             image_size, val_split, train_samples, val_samples, fine_tune_epochs, batch_size, max_accuracy_drop, output,
             tflite, summary, as_json):
    """Compress MODEL_PATH (.keras, .h5 or SavedModel) with a recipe or flags; write the model and a JSON summary.

    Exits 1 when a stage's checks fail or the accuracy drop exceeds --max-accuracy-drop; the model
    and the summary (every check) are written all the same, to inspect.

    \b
    Example:
      mobile-opt optimize model.keras --prune 0.8 --cluster 16 --quantize qat_int8 -o out/model.keras
    """
    from converters import is_qat_model as converters_is_qat
    from mobile_opt._files import OutputFiles
    from mobile_opt.errors import RecipeError
    from mobile_opt.models import load_model, save_model, saved_model_format
    from mobile_opt.recipe import load_recipe

    # Every output is checked (and staged beside its target) before any work; all are renamed
    # into place together at the end; the staged copies go when the command ends, however.
    outputs = click.get_current_context().with_resource(OutputFiles())
    outputs.reserve(output, what="--output", directory=saved_model_format(output) == "tf")
    if tflite is not None:
        outputs.reserve(tflite, what="--tflite")
    summary_path = summary or output.with_name(output.name + ".json")
    outputs.reserve(summary_path, what="--summary")
    if recipe is not None:
        loaded = load_recipe(recipe)
    else:
        if bits is not None and quantize is None:
            raise RecipeError("--bits sets the bits of a quantize stage: give --quantize ptq_int8 or int4_fc too.")
        spec = _recipe_from_flags(prune, prune_schedule, prune_structure, cluster, quantize, _parse_bits(bits), fold)
        if not spec["stages"]:
            raise RecipeError(
                "Nothing to do: give --recipe FILE or at least one of --fold-batchnorm, --prune, --cluster, --quantize.")
        loaded = load_recipe(spec)
    options = dict(loaded.run_options)
    for key, value in (("fine_tune_epochs", fine_tune_epochs), ("batch_size", batch_size),
                       ("max_accuracy_drop", max_accuracy_drop)):
        if value is not None:
            options[key] = value
    model = load_model(model_path)
    train, val = load_data(data, model, image_size=image_size, val_split=val_split,
                           train_samples=train_samples, val_samples=val_samples)
    with epoch_progress(not as_json) as progress:
        result = loaded.pipeline.run(model, train, val, progress=progress, **options)
    # Keras 3 in, Keras 3 out (a QAT model ships as its .tflite and stays tf_keras).
    keep = result.keras3_model() if result.source_model is not None and not converters_is_qat(result.model) else result.model
    outputs.write_with(output, lambda staged: save_model(keep, staged))
    written = {"model": str(output)}
    if tflite is not None:
        if result.tflite is not None:
            blob = result.tflite
        else:
            import converters

            blob = converters.convert(result.model)
        outputs.write_bytes(tflite, blob)
        written["tflite"] = str(tflite)
    payload = {**result.to_dict(), "written": written, "provenance": provenance()}
    outputs.write_bytes(summary_path, json.dumps(payload, indent=2).encode())
    outputs.commit()
    if as_json:
        print_json(payload)
    else:
        print_pipeline_result(result, summary=str(summary_path))
        console.print(f"Wrote {', '.join(written.values())} and {summary_path}", markup=False)
    if not result.ok:
        # A check that failed (or the tolerance) is a failed run, even with its files written to inspect.
        sys.exit(1)
