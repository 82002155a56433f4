"""``python3 fleetmeter-hwcheck.pyz`` or ``python -m fleetmeter.collectors.hwcheck``: the hardware check.

argparse, not typer: the bundle carries nothing but the nvml backend, pynvml and structlog.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

import structlog

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.hwcheck import load
from fleetmeter.collectors.hwcheck.check import run_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetmeter-hwcheck", description="fleetmeter's nvml backend beside "
                                     "nvidia-smi on this machine's NVIDIA GPUs, idle and under a known load.")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default 30)")
    parser.add_argument("--output", type=Path, default=Path("hardware-check.md"), help="the Markdown report")
    parser.add_argument("--no-load", action="store_true", help="the idle phase only")
    parser.add_argument("--load-gib", type=float, default=2.0, help="device memory the load allocates per GPU")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.seconds <= 3600 or not 0 < arguments.load_gib <= 1024:
        parser.error("--seconds is 1 to 3600 and --load-gib more than 0 and at most 1024")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # the report says it
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        print("fleetmeter-hwcheck: needs nvidia-ml-py (module pynvml); the bundle carries it", file=sys.stderr)
        return 2
    memory = int(arguments.load_gib * 1024**3)
    try:
        report = run_check(nvml, arguments.seconds,
                           start_load=None if arguments.no_load else lambda: load.start(memory))
    except BackendUnavailable as exc:
        print(f"fleetmeter-hwcheck: {exc}", file=sys.stderr)
        return 2
    arguments.output.write_text(report.markdown())
    print(f"fleetmeter-hwcheck: {sum(r.verdict in ('agrees', 'as expected') for r in report.rows)} of "
          f"{len(report.rows)} comparisons agree; report written to {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
