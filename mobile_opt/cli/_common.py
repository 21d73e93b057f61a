"""Rendering and error handling shared by the CLI subcommands (never imported by the library)."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import escape

from mobile_opt.errors import MobileOptError

# Piped output (CI logs) gets rich's 80-column default otherwise, which truncates tables;
# an explicit COLUMNS (the terminal's, or the user's) wins.
def _width(stream) -> int | None:
    return None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160


console = Console(width=_width(sys.stdout))
stderr_console = Console(stderr=True, width=_width(sys.stderr))


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, refusing nan (which passes every comparison) and ±inf."""

    name = "float"

    def _describe_range(self) -> str:
        # click prints "x<=None" for an unbounded side.
        return super()._describe_range() if self.min is not None or self.max is not None else "finite"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def handle_errors(func: Callable) -> Callable:
    """Turns a `MobileOptError` into a one-paragraph message and its exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MobileOptError as exc:
            # escape: messages quote TOML headers ("[[stages]]") and lists that rich would eat as markup.
            stderr_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            stderr_console.print("[yellow]interrupted[/]")
            sys.exit(130)

    return wrapper


def print_json(data: Any) -> None:
    """Writes `data` as indented JSON to stdout (no rich markup, safe to pipe)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def parse_image_size(ctx, param, value):
    """Click callback: "28x28" (or "28") -> (28, 28)."""
    if value is None:
        return None
    parts = value.lower().split("x")
    try:
        size = tuple(int(p) for p in parts) if len(parts) == 2 else (int(value),) * 2
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise click.BadParameter(f"expected HEIGHTxWIDTH, e.g. 28x28. Received: {value!r}.")
    return size


_DATA_OPTIONS = (
    click.option("--data", default="fashion-mnist", show_default=True,
                 help="'fashion-mnist', an .npz with x_train/y_train/x_val/y_val, or a directory of images "
                      "with one subfolder per class."),
    click.option("--image-size", callback=parse_image_size, help="Resize folder images to HxW (e.g. 28x28)."),
    click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                 help="Fraction of a folder's images held out for validation [0.2]."),
    click.option("--train-samples", type=click.IntRange(min=1), help="Use only the first N training samples."),
    click.option("--val-samples", type=click.IntRange(min=1), help="Use only the first N validation samples."),
)


def data_options(command: Callable) -> Callable:
    """The `--data` options `optimize` and `auto` share (read by `load_data`)."""
    for option in reversed(_DATA_OPTIONS):
        command = option(command)
    return command


def load_data(spec, model, *, image_size, val_split, train_samples, val_samples):
    """The `--data` of optimize/auto, shaped for `model` (Keras 3 or tf_keras)."""
    from mobile_opt.datasets import load_dataset

    output = model.outputs[0].shape
    return load_dataset(spec, input_shape=tuple(model.inputs[0].shape)[1:], train_samples=train_samples,
                        val_samples=val_samples, image_size=image_size, val_split=val_split,
                        num_classes=int(output[-1]) if output[-1] is not None else None)
