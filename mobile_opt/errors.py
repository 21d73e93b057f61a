"""The one error hierarchy of mobile-opt.

Every failure a user can meet is a `MobileOptError`; the CLI maps it to an
exit code (`exit_code`): 1 for a failure while doing the work, 2 for bad input
(arguments, files, data, configuration). Failures of TensorFlow, LiteRT,
sockets and subprocesses are translated at the boundary and chained
(`raise ... from exc`), so the original cause is never lost.

This module is a leaf: `converters` and `device_bench` import it, and it
imports nothing of ours.
"""

from __future__ import annotations

__all__ = [
    "MobileOptError",
    "InputError",
    "ModelFormatError",
    "UnsupportedModelError",
    "DataError",
    "RecipeError",
    "DependencyError",
    "OptimizationError",
    "ConversionError",
    "DeviceError",
    "DeviceNotFoundError",
    "DeviceTimeoutError",
    "DeviceUnauthorizedError",
    "DeviceOfflineError",
    "DeviceDisconnectedError",
    "DeviceStorageFullError",
    "BenchmarkError",
    "BudgetExceeded",
    "ConstraintError",
]


class MobileOptError(Exception):
    """Base of every error raised by mobile-opt."""

    exit_code = 1


class InputError(MobileOptError, ValueError):
    """An argument, file, dataset or configuration is not usable as given."""

    exit_code = 2


class ModelFormatError(InputError):
    """A file is not a readable model of the expected format (.tflite, .keras, .h5, SavedModel)."""


class UnsupportedModelError(InputError):
    """The model is valid but cannot be handled (Keras 3, subclassed, unquantizable layer...)."""


class DataError(InputError):
    """Training, validation or representative data is empty or does not fit the model."""


class RecipeError(InputError):
    """A recipe names an unknown stage, a bad parameter or an order that cannot work."""


class DependencyError(MobileOptError):
    """An optional dependency or system tool is missing; the message gives the install command."""


class OptimizationError(MobileOptError):
    """A compression stage failed while running (not a verification miss: those are reported)."""


class ConversionError(MobileOptError):
    """Keras -> TFLite conversion, or running the converted model, failed."""


class DeviceError(MobileOptError):
    """Talking to a device failed. `serial` names the device, `step` what was being done."""

    def __init__(self, message: str, *, serial: str | None = None, step: str | None = None):
        super().__init__(message)
        self.serial = serial
        self.step = step


class DeviceNotFoundError(DeviceError):
    """No device matches the requested serial, or nothing listens at the address."""


class DeviceTimeoutError(DeviceError):
    """A device operation did not finish within its timeout."""


class DeviceUnauthorizedError(DeviceError):
    """The device has not accepted this host's ADB key."""


class DeviceOfflineError(DeviceError):
    """The device is known to the adb server but offline."""


class DeviceDisconnectedError(DeviceError):
    """The connection to the device broke during an operation."""


class DeviceStorageFullError(DeviceError):
    """The device has no space left for a pushed file."""


class BenchmarkError(MobileOptError):
    """A benchmark run failed or its output could not be understood."""


class BudgetExceeded(MobileOptError):
    """A model is over one of its declared size or compute budgets."""


class ConstraintError(InputError):
    """Search constraints are contradictory, impossible or in unknown units."""
