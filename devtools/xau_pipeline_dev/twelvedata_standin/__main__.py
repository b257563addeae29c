"""Run the Twelve Data stand-in in the foreground until Ctrl-C or SIGTERM.

The API key it accepts comes from TWELVE_DATA_API_KEY (demo-key when unset), never from the
command line, where every process listing would show it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Mapping

from .prices import ANCHORS, DAY_BOUNDARIES
from .server import StandIn, StandInConfig

KEY_VARIABLE = "TWELVE_DATA_API_KEY"
FALLBACK_KEY = "demo-key"


def config_from(argv: list[str] | None, environ: Mapping[str, str]) -> tuple[StandInConfig, str | None]:
    """The configuration the command line and the environment ask for, and a note for the user (or None)."""
    parser = argparse.ArgumentParser(prog="python -m xau_pipeline_dev.twelvedata_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--credits-per-minute", type=int, default=8)
    parser.add_argument("--credits-per-day", type=int, default=800)
    parser.add_argument("--no-limits", action="store_true", help="no per-minute or per-day credit limit")
    parser.add_argument("--error-status", choices=("http", "body200"), default="http")
    parser.add_argument(
        "--cme-hours", action="store_true", help="serve CME metals hours only, not a 24/7 feed (the default)"
    )
    parser.add_argument("--paid-plan", action="store_true", help="serve XAG/USD, not 404 as outside the free plan")
    parser.add_argument(
        "--bar-anchor",
        choices=ANCHORS,
        default="utc",
        help="4h and 1day bars on the UTC grid, or anchored at 17:00 New York (moving with US DST)",
    )
    parser.add_argument("--h4-phase-hours", type=int, choices=range(4), default=0, help="4h bars at this + 4k h UTC")
    parser.add_argument(
        "--day-boundary", choices=DAY_BOUNDARIES, default=None, help="where 1day bars open (default: --bar-anchor's)"
    )
    parser.add_argument(
        "--daily-stamp", choices=("date", "open"), default="date", help="1day bars carry a bare date or their open"
    )
    args = parser.parse_args(argv)

    key = environ.get(KEY_VARIABLE, "").strip()
    note = None
    if not key:
        key = FALLBACK_KEY
        note = f"{KEY_VARIABLE} is not set: the stand-in accepts the key {FALLBACK_KEY!r}"
    config = StandInConfig(
        api_key=key,
        host=args.host,
        port=args.port,
        credits_per_minute=None if args.no_limits else args.credits_per_minute,
        credits_per_day=None if args.no_limits else args.credits_per_day,
        error_status=args.error_status,
        weekend_bars=not args.cme_hours,
        plan_gated=() if args.paid_plan else StandInConfig().plan_gated,
        bar_anchor=args.bar_anchor,
        h4_phase_hours=args.h4_phase_hours,
        day_boundary=args.day_boundary,
        daily_stamp=args.daily_stamp,
    )
    return config, note


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve, and stop cleanly on SIGINT/SIGTERM."""
    config, note = config_from(argv, os.environ)
    if note:
        print(note, file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with StandIn(config) as stand_in:
        print(f"Twelve Data stand-in listening on {stand_in.url}", flush=True)
        while not stop.wait(0.5):
            pass
    print("Twelve Data stand-in stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
