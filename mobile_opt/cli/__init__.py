"""`mobile-opt`: a thin command-line layer over the library.

Each subcommand lives in its own module and is imported only when invoked, so
`mobile-opt devices` does not pay for importing TensorFlow.

Exit codes (documented in the README):
  0  success (and, for `check`, every budget held)
  1  the work failed (a `MobileOptError`), or `check` found a budget exceeded
  2  usage or input error: bad option, missing/invalid file, bad recipe or data
"""

from __future__ import annotations

import importlib
import logging

import click

from mobile_opt._version import __version__

# subcommand -> "module:attribute" (the module is under mobile_opt.cli).
_COMMANDS = {
    "demo": "demo:demo",
    "optimize": "optimize:optimize",
    "analyze": "analyze:analyze",
    "check": "check:check",
    "devices": "devices:devices",
    "bench": "bench:bench",
    "auto": "auto:auto",
    "report": "report:report",
    "tools": "tools:tools",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"mobile_opt.cli.{module_name}")
        return getattr(module, attr)

    def resolve_command(self, ctx, args):
        # Suggest close matches for a mistyped subcommand (click only says "No such command").
        name = args[0] if args else None
        if name and not name.startswith("-") and name not in _COMMANDS:
            import difflib

            close = difflib.get_close_matches(name, list(_COMMANDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mobile-opt")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Compress Keras models, convert them to TFLite, see their size, measure them on devices."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    from rich.logging import RichHandler

    from mobile_opt.cli._common import stderr_console

    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=stderr_console, show_path=False, show_time=False)],
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="mobile-opt")
