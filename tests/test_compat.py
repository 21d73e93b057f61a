"""Each compatibility module names the dependency version it was written for; this pins it.

They hold every patch of, and every reach into, a dependency's internals (adb-shell's
checksum and transport, adbutils' server spawning, flatbuffers' `_tab`, TF-MOT's private
modules). When an upgrade changes the installed version this test fails on purpose: recheck
the module against the new release, then update its WRITTEN_FOR.
"""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

MODULES = {
    "device_bench._compat_adb_shell": "adb-shell",
    "device_bench._compat_adbutils": "adbutils",
    "converters._compat_flatbuffers": "flatbuffers",
    "mobile_opt._compat_tfmot": "tensorflow-model-optimization",
}


@pytest.mark.parametrize("module, distribution", sorted(MODULES.items()))
def test_written_for_the_installed_version(module, distribution):
    written_for = importlib.import_module(module).WRITTEN_FOR
    installed = importlib.metadata.version(distribution)
    assert installed == written_for, (
        f"{distribution} {installed} is installed but {module} was written for {written_for}: "
        "recheck the private APIs it uses, then update WRITTEN_FOR."
    )


def test_private_apis_are_still_where_the_modules_expect_them():
    from adb_shell import adb_device, adb_message
    from adbutils import AdbConnection

    from device_bench import _compat_adb_shell
    from mobile_opt import _compat_tfmot

    assert adb_message.checksum is adb_device.checksum is _compat_adb_shell.fast_checksum
    assert callable(getattr(AdbConnection, "_safe_connect")) and callable(getattr(AdbConnection, "_create_socket"))
    assert hasattr(_compat_tfmot.experimental_cluster(), "cluster_weights")
    assert hasattr(_compat_tfmot.default_8bit_registry(), "supports")
