"""`xau-pipeline`: the command line beside the Dagster UI."""

from __future__ import annotations

import argparse
import sys

from xau_pipeline.store.database import database_url, safe_url

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _migrate(args: argparse.Namespace) -> int:
    from xau_pipeline.store.candle_store import CandleStore, StoreUnavailableError
    from xau_pipeline.store.migrate import current_revision

    try:
        store = CandleStore(database_url())
    except StoreUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{safe_url(store.url)}: schema at revision {current_revision(store.engine)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xau-pipeline", description="XAU/USD candle pipeline tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the database migrations (XAU_DATABASE_URL)").set_defaults(run=_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
