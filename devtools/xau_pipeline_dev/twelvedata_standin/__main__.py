"""Run the Twelve Data stand-in in the foreground until Ctrl-C or SIGTERM.

The API key it accepts comes from TWELVE_DATA_API_KEY (demo-key when unset), never from the
command line, where every process listing would show it.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Mapping

from .prices import ANCHORS, DAY_BOUNDARIES
from .server import BEFORE_PUBLICATION, StandIn, StandInConfig

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
    defaults = StandInConfig()
    parser.add_argument(
        "--publication-delay",
        type=seconds_range,
        default=defaults.publication_delay_seconds,
        metavar="MIN,MAX",
        help=f"seconds from a bar's close to its publication, drawn per bar (default: "
        f"{_pair(defaults.publication_delay_seconds)}; 0: every bar at its close, none late)",
    )
    parser.add_argument(
        "--late-share",
        type=float,
        default=None,
        help=f"share of bars published later, after --late-delay (default: {defaults.publication_late_share}; "
        "0 with --publication-delay 0)",
    )
    parser.add_argument(
        "--late-delay",
        type=seconds_range,
        default=defaults.publication_late_seconds,
        metavar="MIN,MAX",
        help=f"the late bars' delay in seconds (default: {_pair(defaults.publication_late_seconds)})",
    )
    parser.add_argument(
        "--before-publication",
        choices=BEFORE_PUBLICATION,
        default=defaults.before_publication,
        help="a closed bar before its publication: left out, or served with provisional values",
    )
    parser.add_argument("--publication-seed", type=int, default=defaults.publication_seed, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.late_share is None:
        args.late_share = defaults.publication_late_share if args.publication_delay[1] > 0 else 0.0
    if not 0 <= args.late_share <= 1:
        parser.error(f"--late-share must be 0 to 1, not {args.late_share}")

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
        publication_delay_seconds=args.publication_delay,
        publication_late_share=args.late_share,
        publication_late_seconds=args.late_delay,
        publication_seed=args.publication_seed,
        before_publication=args.before_publication,
    )
    return config, note


def _pair(pair: tuple[float, float]) -> str:
    return ",".join(f"{x:g}" for x in pair)


def seconds_range(text: str) -> tuple[float, float]:
    """``MIN,MAX`` seconds (0 <= MIN <= MAX), or one number for both."""
    try:
        parts = [float(part) for part in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(math.isfinite(x) for x in parts) or not 0 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX seconds with 0 <= MIN <= MAX, not {text!r}")
    return parts[0], parts[1]


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
