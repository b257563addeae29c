"""The helpers every message goes through: UTC labels, markdown tables, secret masking."""

from datetime import UTC, datetime, timedelta, timezone

from xau_pipeline.clock import day_start, iso_utc, next_utc_midnight, utc_label
from xau_pipeline.defs.candles.markdown_tables import ROWS_SHOWN, markdown_table
from xau_pipeline.redact import one_line, redact, url_password


def test_utc_helpers_convert_to_utc_first():
    new_york_evening = datetime(2024, 3, 1, 20, 30, tzinfo=timezone(timedelta(hours=-5)))  # 01:30 UTC next day
    assert utc_label(new_york_evening) == "2024-03-02 01:30 UTC" and utc_label(None) == "-"
    assert iso_utc(new_york_evening) == "2024-03-02T01:30:00Z"
    assert day_start(new_york_evening) == datetime(2024, 3, 2, tzinfo=UTC)
    assert next_utc_midnight(new_york_evening) == datetime(2024, 3, 3, tzinfo=UTC)
    assert next_utc_midnight(datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2025, 1, 1, tzinfo=UTC)


def test_markdown_table_caps_its_rows_and_says_how_many_more():
    assert markdown_table(("a", "b"), [], empty="nothing") == "nothing"
    assert markdown_table(("a", "b"), [(1, "x")]) == "| a | b |\n|---|---|\n| 1 | x |"
    table = markdown_table(("n",), [(i,) for i in range(ROWS_SHOWN + 7)])
    assert table.count("\n| ") == ROWS_SHOWN and table.endswith("… and 7 more")


def test_secrets_are_masked_everywhere_they_appear():
    key, password = "td-secret-key-123", "hunter2"
    text = f"GET /x?apikey={key} failed for postgresql://u:{password}@h/db\n  again {key}"
    assert redact(text, key, None, "") == text.replace(key, "***")
    assert one_line(text, key, password) == "GET /x?apikey=*** failed for postgresql://u:***@h/db again ***"
    assert url_password(f"postgresql://u:{password}@h/db") == password
    assert url_password("postgresql://u@h/db") is None and url_password("not a url at all") is None
