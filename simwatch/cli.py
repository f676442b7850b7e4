"""The ``simwatch`` command: one subcommand per entry point."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from simwatch import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

USAGE = """usage: simwatch COMMAND [options]

commands:
  run        run the daemon (built-in simulator source and HTTP API on 127.0.0.1:39153
             when no config is given; --config.file PATH, --config.check)
  check-config  check a configuration file (and SIMWATCH_ environment) and exit
  demo       simulate a fleet with a fault and replay it offline, no setup
  replay     replay NDJSON records on their own clock and print the incidents found
  simulate   generate a realistic fleet (inventory, records, ground truth), with faults
  version    print the version

Run 'simwatch COMMAND --help' for a command's options.
"""


def _replay(argv: Sequence[str]) -> int:
    from simwatch.shell import replay  # noqa: PLC0415 - each command loads only what it needs

    return replay.main(argv)


def _simulate(argv: Sequence[str]) -> int:
    from simwatch.sim import simulate  # noqa: PLC0415 - each command loads only what it needs

    return simulate.main(argv)


def _run(argv: Sequence[str]) -> int:
    from simwatch.service import run  # noqa: PLC0415 - each command loads only what it needs

    return run.main(argv)


def _check_config(argv: Sequence[str]) -> int:
    from simwatch.shell.settings import check_config_main  # noqa: PLC0415 - loads only what it needs

    return check_config_main(argv)


def _demo(argv: Sequence[str]) -> int:
    from simwatch.sim import demo  # noqa: PLC0415 - each command loads only what it needs

    return demo.main(argv)


def _version(_argv: Sequence[str]) -> int:
    print(f"simwatch {__version__}")
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": _run,
    "check-config": _check_config,
    "demo": _demo,
    "replay": _replay,
    "simulate": _simulate,
    "version": _version,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"simwatch: unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
