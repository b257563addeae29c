import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from xau_pipeline.interfaces import cli
from xau_pipeline.market.bars import Bar, FetchedWindow
from xau_pipeline.market.market_hours import calendar
from xau_pipeline.market.timeframes import TIMEFRAMES_BY_NAME
from xau_pipeline.store.tables import api_calls
from xau_pipeline.store.upsert import upsert_bars

UTC = UTC
T0 = datetime(2024, 1, 2, tzinfo=UTC)
M15 = timedelta(minutes=15)
H1 = TIMEFRAMES_BY_NAME["H1"]
UNREACHABLE = "postgresql://xau:hunter2@127.0.0.1:1/nowhere"


@pytest.fixture
def db(store, monkeypatch):
    monkeypatch.setenv("XAU_DATABASE_URL", store.url)
    for name in (
        "XAU_SYMBOLS",
        "TWELVE_DATA_CREDITS_PER_MINUTE",
        "TWELVE_DATA_CREDITS_PER_DAY",
        "XAU_SCHEDULE_CREDIT_SHARE",
    ):
        monkeypatch.delenv(name, raising=False)
    return store


def at(monkeypatch, now: datetime) -> None:
    monkeypatch.setattr(cli, "utc_now", lambda: now)


def insert(store, bars, symbol="XAUUSD", timeframe="M15"):
    with store.engine.begin() as connection:
        upsert_bars(connection, symbol, timeframe, bars)


def flat(times, price="2050.5") -> list[Bar]:
    p = Decimal(price)
    return [Bar(t, p, p, p, p) for t in times]


def three_bars(store):
    insert(
        store,
        [
            Bar(T0, Decimal("2050.12345"), Decimal("2051.00"), Decimal("2049.9"), Decimal("2050.5"), None),
            Bar(
                T0 + M15,
                Decimal("1999.10"),
                Decimal("2000"),
                Decimal("1998.00001"),
                Decimal("1999.90"),
                Decimal("12.50"),
            ),
            Bar(T0 + 2 * M15, Decimal("0.00001"), Decimal("3"), Decimal("0.00001"), Decimal("2.5"), Decimal("7")),
        ],
    )


def run(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# ---- candles -------------------------------------------------------------------------------------


def test_candles_json_keeps_exact_digits_as_strings_newest_first(db, capsys):
    three_bars(db)
    status, out, err = run(capsys, "candles", "m15", "--format", "json")
    assert (status, err) == (0, "")
    assert json.loads(out) == [
        {
            "timestamp": "2024-01-02T00:30:00Z",
            "open": "0.00001",
            "high": "3",
            "low": "0.00001",
            "close": "2.5",
            "volume": "7",
            "final": True,
        },
        {
            "timestamp": "2024-01-02T00:15:00Z",
            "open": "1999.10",
            "high": "2000",
            "low": "1998.00001",
            "close": "1999.90",
            "volume": "12.50",
            "final": True,
        },
        {
            "timestamp": "2024-01-02T00:00:00Z",
            "open": "2050.12345",
            "high": "2051.00",
            "low": "2049.9",
            "close": "2050.5",
            "volume": None,
            "final": True,
        },
    ]


def test_candles_csv_has_a_header_and_exact_digits(db, capsys):
    three_bars(db)
    status, out, _ = run(capsys, "candles", "M15", "--format", "csv")
    assert status == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["timestamp", "open", "high", "low", "close", "volume", "final"],
        ["2024-01-02T00:30:00Z", "0.00001", "3", "0.00001", "2.5", "7", "yes"],
        ["2024-01-02T00:15:00Z", "1999.10", "2000", "1998.00001", "1999.90", "12.50", "yes"],
        ["2024-01-02T00:00:00Z", "2050.12345", "2051.00", "2049.9", "2050.5", "", "yes"],
    ]


def test_candles_table_is_aligned_under_a_header(db, capsys):
    three_bars(db)
    status, out, _ = run(capsys, "candles", "M15")  # table is the default
    lines = out.splitlines()
    assert status == 0 and len(lines) == 4
    assert lines[0].split() == ["timestamp", "open", "high", "low", "close", "volume", "final"]
    assert lines[1].split() == ["2024-01-02T00:30:00Z", "0.00001", "3", "0.00001", "2.5", "7", "yes"]
    assert lines[3].split() == ["2024-01-02T00:00:00Z", "2050.12345", "2051.00", "2049.9", "2050.5", "-", "yes"]
    assert len({len(line) for line in lines}) == 1
    # numbers are right-aligned: every column of every row ends where its header ends
    header_ends = [lines[0].index(name) + len(name) for name in ("open", "high", "low", "close", "volume", "final")]
    for line in lines[1:]:
        assert [i + 1 for i in range(1, len(line)) if line[i] != " " and (i + 1 == len(line) or line[i + 1] == " ")][
            1:
        ] == header_ends


def test_candles_tell_provisional_bars_and_can_leave_them_out(db, capsys):
    bars = flat([T0 + i * timedelta(minutes=15) for i in range(3)])
    with db.engine.begin() as connection:
        upsert_bars(connection, "XAUUSD", "M15", bars, final_before=T0 + timedelta(minutes=15))
    status, out, _ = run(capsys, "candles", "M15", "--format", "csv")
    assert status == 0 and [row[-1] for row in csv.reader(io.StringIO(out))] == ["final", "no", "no", "yes"]
    status, out, _ = run(capsys, "candles", "M15", "--final-only", "--format", "json")
    assert status == 0 and [(bar["timestamp"], bar["final"]) for bar in json.loads(out)] == [
        ("2024-01-02T00:00:00Z", True)
    ]


def test_candles_empty_table_says_so(db, capsys):
    status, out, _ = run(capsys, "candles", "H4")
    assert status == 0 and "no XAUUSD H4 candles" in out


def test_candles_limit_takes_the_newest(db, capsys):
    insert(db, flat([T0 + i * M15 for i in range(120)]))
    _, out, _ = run(capsys, "candles", "M15", "--format", "csv", "--limit", "3")
    assert [r[0] for r in csv.reader(io.StringIO(out))][1:] == [
        "2024-01-03T05:45:00Z",
        "2024-01-03T05:30:00Z",
        "2024-01-03T05:15:00Z",
    ]
    _, out, _ = run(capsys, "candles", "M15", "--format", "json")
    assert len(json.loads(out)) == 100
    _, out, _ = run(capsys, "candles", "M15", "--format", "json", "--limit", "5000")
    assert len(json.loads(out)) == 120


def test_candles_start_end_window_and_symbol(db, capsys):
    insert(db, flat([T0 + i * M15 for i in range(8)]))
    insert(db, flat([T0 + i * M15 for i in range(8)], "25.125"), symbol="XAGUSD")
    _, out, _ = run(
        capsys, "candles", "M15", "--format", "json", "--start", "2024-01-02T00:30", "--end", "2024-01-02T01:15"
    )
    assert [r["timestamp"] for r in json.loads(out)] == [
        "2024-01-02T01:00:00Z",
        "2024-01-02T00:45:00Z",
        "2024-01-02T00:30:00Z",
    ]
    assert {r["open"] for r in json.loads(out)} == {"2050.5"}
    # an explicit offset is converted to UTC; a plain date is midnight UTC
    _, out, _ = run(
        capsys, "candles", "M15", "--format", "json", "--start", "2024-01-02T03:30+02:00", "--end", "2024-01-03"
    )
    assert [r["timestamp"] for r in json.loads(out)][-1] == "2024-01-02T01:30:00Z"
    assert len(json.loads(out)) == 2
    _, out, _ = run(capsys, "candles", "M15", "--format", "json", "--symbol", "XAGUSD", "--limit", "1")
    assert json.loads(out)[0]["close"] == "25.125"


# ---- gaps --------------------------------------------------------------------------------------


WEEK_START = datetime(2024, 3, 3, tzinfo=UTC)  # a Sunday
WEEK_END = WEEK_START + timedelta(days=7)
DELETED = datetime(2024, 3, 6, 14, tzinfo=UTC)
SATURDAY = datetime(2024, 3, 9, 12, tzinfo=UTC)


def store_week_without_one_bar(store):
    slots = calendar("cme_gold").expected_slots(WEEK_START, WEEK_END, H1.bar)
    assert DELETED in slots and SATURDAY not in slots and len(slots) > 100
    insert(store, flat(sorted([s for s in slots if s != DELETED] + [SATURDAY])), timeframe="H1")
    return slots


def gap_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[:2] == "20"]


def field(out: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(name + ":"))


def test_gaps_finds_exactly_the_deleted_bar_and_counts_the_weekend_bar_off_session(db, capsys, monkeypatch):
    slots = store_week_without_one_bar(db)
    at(monkeypatch, datetime(2024, 4, 1, tzinfo=UTC))
    status, out, err = run(capsys, "gaps", "H1", "--start", "2024-03-03", "--end", "2024-03-10")
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "XAUUSD H1 from 2024-03-03T00:00:00Z to 2024-03-10T00:00:00Z (calendar cme_gold)"
    assert field(out, "expected") == str(len(slots))
    assert field(out, "stored") == str(len(slots) - 1)  # all but one; the Saturday bar is off-session
    assert field(out, "missing") == "1 (never fetched 1, provider returned nothing 0, not published yet 0)"
    assert field(out, "off-session") == "1"
    assert field(out, "phase") == "+00:00 from 00:00 UTC"
    assert gap_lines(out) == ["2024-03-06T14:00:00Z  never fetched"]


def test_gaps_refuses_a_window_above_its_maximum_at_once(db, capsys, monkeypatch):
    import time

    began = time.monotonic()
    status, out, err = run(capsys, "gaps", "M15", "--start", "1900-01-01", "--end", "2100-01-01")
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "is longer than 3660 days, the most M15 gaps are checked for at once: ask in parts" in err
    assert time.monotonic() - began < 5
    status, _, err = run(capsys, "gaps", "D1", "--start", "1990-01-01", "--end", "2026-01-01")
    assert status == 0, err  # 13,150 D1 slots are within the maximum


@pytest.mark.parametrize(("name", "days"), [("M15", 3660), ("H1", 14640), ("D1", 14640)])
def test_gaps_takes_its_longest_window_and_refuses_one_bar_more(db, capsys, name, days):
    start = datetime(2030, 1, 1, tzinfo=UTC)
    longest = start + timedelta(days=days)
    status, _, err = run(capsys, "gaps", name, "--start", start.isoformat(), "--end", longest.isoformat())
    assert status == 0, err
    beyond = longest + TIMEFRAMES_BY_NAME[name].bar
    status, _, err = run(capsys, "gaps", name, "--start", start.isoformat(), "--end", beyond.isoformat())
    assert status == 2 and f"is longer than {days} days, the most {name} gaps" in err


def test_candles_reads_at_most_its_limit_however_wide_the_window(db, capsys):
    three_bars(db)
    status, out, _ = run(capsys, "candles", "M15", "--start", "1900-01-01", "--end", "2100-01-01", "--limit", "2")
    assert status == 0 and len(out.strip().splitlines()) == 1 + 2
    status, _, err = run(capsys, "candles", "M15", "--limit", "5001")
    assert status == 2 and "--limit must be from 1 to 5000" in err


def test_gaps_uses_the_symbols_calendar(db, capsys, monkeypatch):
    store_week_without_one_bar(db)
    at(monkeypatch, datetime(2024, 4, 1, tzinfo=UTC))
    monkeypatch.setenv("XAU_SYMBOLS", "XAU/USD:24x7")
    _, out, _ = run(capsys, "gaps", "H1", "--start", "2024-03-03", "--end", "2024-03-10")
    assert "(calendar 24x7)" in out.splitlines()[0]
    assert field(out, "expected") == str(7 * 24)
    assert field(out, "off-session") == "0"
    assert "2024-03-09T12:00:00Z" not in out and "2024-03-09T13:00:00Z  never fetched" in gap_lines(out)


def test_gaps_gives_each_reason(db, capsys, monkeypatch):
    day = datetime(2024, 3, 6, tzinfo=UTC)
    fetched_at = day + timedelta(hours=14, minutes=30)
    absent = {day + timedelta(hours=3), day + timedelta(hours=10), day + timedelta(hours=14)}
    bars = flat([day + timedelta(hours=h) for h in range(15) if day + timedelta(hours=h) not in absent])
    # Fetched from 06:00 at 14:30: the bars opening before 13:30 are final (10:00 came back empty).
    db.write(
        "XAUUSD", H1, bars, [FetchedWindow(day + timedelta(hours=6), day + timedelta(hours=16), fetched_at, len(bars))]
    )
    # At 15:05 the 14:00 bar closed 5 minutes ago and is not settled: late, not missing. 15:00 is forming.
    at(monkeypatch, day + timedelta(hours=15, minutes=5))
    status, out, _ = run(capsys, "gaps", "H1", "--start", "2024-03-06", "--end", "2024-03-06T16:00")
    assert status == 0
    assert field(out, "missing") == "3 (never fetched 1, provider returned nothing 1, not published yet 1)"
    assert gap_lines(out) == [
        "2024-03-06T03:00:00Z  never fetched",
        "2024-03-06T10:00:00Z  provider returned nothing",
        "2024-03-06T14:00:00Z  not published yet",
    ]


def test_gaps_default_window_is_the_last_seven_days_and_phase_is_read_off_the_bars(db, capsys, monkeypatch):
    at(monkeypatch, datetime(2024, 3, 8, 12, 7, tzinfo=UTC))
    insert(db, flat([datetime(2024, 3, 5, 1, tzinfo=UTC) + i * timedelta(hours=4) for i in range(6)]), timeframe="H4")
    _, out, _ = run(capsys, "gaps", "h4")
    assert out.splitlines()[0] == "XAUUSD H4 from 2024-03-01T12:07:00Z to 2024-03-08T12:07:00Z (calendar cme_gold)"
    assert field(out, "phase") == "+01:00 from 00:00 UTC"
    assert field(out, "stored") == "6"
    lines = gap_lines(out)
    assert {line[11:19] for line in lines} <= {"01:00:00", "05:00:00", "09:00:00", "13:00:00", "17:00:00", "21:00:00"}
    # 09:00 closes at 13:00, after "now": still forming, so neither expected nor missing.
    assert lines[-1] == "2024-03-08T05:00:00Z  never fetched"
    assert len(lines) == int(field(out, "expected")) - 6 > 1
    assert all(line.endswith("never fetched") for line in lines)
    _, out, _ = run(capsys, "gaps", "H4", "--start", "2024-03-07")
    assert out.splitlines()[0].startswith("XAUUSD H4 from 2024-03-07T00:00:00Z to 2024-03-08T12:07:00Z")


# ---- credits -------------------------------------------------------------------------------------


def test_credits_by_kind_and_what_is_left(db, capsys, monkeypatch):
    day = datetime(2024, 5, 6, tzinfo=UTC)
    ledger = [
        (day + timedelta(hours=1), 3, "schedule"),
        (day + timedelta(hours=2), 2, "schedule"),
        (day + timedelta(hours=3), 5, "backfill"),
        (day - timedelta(hours=1), 7, "repair"),
    ]
    with db.engine.begin() as connection:
        connection.execute(
            api_calls.insert(),
            [
                {"at": t, "credits": c, "kind": k, "symbol": "XAU/USD", "interval": "1h", "outcome": "ok"}
                for t, c, k in ledger
            ],
        )
    monkeypatch.setenv("TWELVE_DATA_CREDITS_PER_DAY", "100")
    monkeypatch.setenv("XAU_SCHEDULE_CREDIT_SHARE", "0.25")
    at(monkeypatch, day + timedelta(hours=12))
    status, out, err = run(capsys, "credits")
    assert (status, err) == (0, "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["Twelve", "Data", "credits", "on", "2024-05-06", "(UTC", "day)"]
    assert lines[1:4] == [
        ["schedule", "5", "(2", "calls)"],
        ["backfill", "5", "(1", "call)"],
        ["repair", "0", "(0", "calls)"],
    ]
    assert field(out, "used") == "10 of 100"
    assert field(out, "left today") == "90"
    assert field(out, "kept for schedules") == "25 (25% of the daily limit)"
    assert field(out, "left for backfill and repair") == "70"


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["candles", "M5"], "error: unknown timeframe 'M5': expected one of M15, H1, H4, D1"),
        (["gaps", "W1"], "error: unknown timeframe 'W1'"),
        (["candles", "H1", "--start", "2024-13-01"], "error: --start '2024-13-01' is not a valid date"),
        (["gaps", "H1", "--end", "yesterday"], "error: --end 'yesterday' is not a date"),
        (
            ["candles", "H1", "--start", "2024-02-01", "--end", "2024-01-01"],
            "error: --start 2024-02-01T00:00:00Z is after --end",
        ),
        (
            ["gaps", "H1", "--start", "2024-02-01T10:00", "--end", "2024-02-01T09:00"],
            "error: --start 2024-02-01T10:00:00Z is after --end",
        ),
        (["candles", "H1", "--limit", "0"], "error: --limit must be from 1 to 5000, got 0"),
        (["candles", "H1", "--limit", "5001"], "error: --limit must be from 1 to 5000, got 5001"),
        (["candles", "H1", "--limit", "ten"], "error: --limit must be a whole number"),
        (["candles", "H1", "--format", "xml"], "error: argument --format: invalid choice"),
        (["candles"], "error: the following arguments are required: TIMEFRAME"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2_before_touching_the_database(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("XAU_DATABASE_URL", UNREACHABLE)
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["candles", "H1"], ["gaps", "H1"], ["credits"], ["migrate"]])
def test_unreachable_database_is_one_line_exit_1_without_the_password(argv, capsys, monkeypatch):
    monkeypatch.setenv("XAU_DATABASE_URL", UNREACHABLE)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (1, "")
    assert err.startswith(
        "error: cannot reach the candle database at postgresql+psycopg2://xau:***@127.0.0.1:1/nowhere"
    )
    assert err.count("\n") == 1 and "hunter2" not in err


def test_bad_settings_are_usage_errors(capsys, monkeypatch):
    monkeypatch.setenv("XAU_DATABASE_URL", "sqlite:///candles.db")
    status, _, err = run(capsys, "candles", "H1")
    assert status == 2 and err.startswith("error: bad XAU_DATABASE_URL") and err.count("\n") == 1
    monkeypatch.setenv("XAU_DATABASE_URL", UNREACHABLE)
    monkeypatch.setenv("TWELVE_DATA_CREDITS_PER_DAY", "lots")
    status, _, err = run(capsys, "credits")
    assert status == 2 and err.startswith("error: bad credit budget setting") and err.count("\n") == 1


@pytest.mark.process
def test_console_script_bad_timeframe_has_no_traceback():
    script = Path(sys.executable).with_name("xau-pipeline")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "xau_pipeline.interfaces.cli"]
    result = subprocess.run(
        [*command, "candles", "M5"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XAU_DATABASE_URL": UNREACHABLE},
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: unknown timeframe 'M5': expected one of M15, H1, H4, D1\n"


def test_an_unmigrated_database_is_one_line_saying_to_migrate(database_url, capsys, monkeypatch):
    from xau_pipeline_dev.testing import temporary_database

    with temporary_database(database_url, "xau_cli_unmigrated") as url:
        monkeypatch.setenv("XAU_DATABASE_URL", url)
        status, out, err = run(capsys, "candles", "H1")
        assert (status, out) == (1, "")
        assert "has no schema yet" in err and "run `xau-pipeline migrate`" in err and err.count("\n") == 1
        status, out, _ = run(capsys, "migrate")
        assert status == 0 and "schema at revision" in out
        assert run(capsys, "candles", "H1")[0] == 0
