"""When a closed bar can be trusted: Twelve Data publishes a bar some time after its close.

Over REST "the typical delay after a candle closes is 0.3 to 2 minutes" (Twelve Data support,
"Data delays"), and "typical" is no bound. Before that a closed bar is either absent from answers or
present with provisional values (both readings fit the article). So:

- a bar in an answer received at least `SETTLE` after its close is final; one received earlier is
  stored as provisional (`candles.final` false) and its slot stays uncovered, so it is asked again;
- a closed bar missing from an answer is "not published yet" until an answer received at least
  `PUBLICATION_WINDOW` after its close still lacks it: only then is its slot covered, a provider gap;
- a bar not final yet is asked again at most every `REASK_EVERY` (the publication sensor).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# The documented typical delay's upper end: the live schedules fetch a bar this long after its close.
SETTLE = timedelta(minutes=2)
# A bar still missing this long after its close is not merely late.
PUBLICATION_WINDOW = timedelta(minutes=10)
# How often a closed bar that is not final yet is asked for again (one credit a time).
REASK_EVERY = timedelta(seconds=40)
# Tags the publication sensor's runs with the series they ask for: live work, the schedules' credit share.
LIVE_TAG = "xau_pipeline/publication"


def final_before(received_at: datetime, bar: timedelta) -> datetime:
    """Bars opening before this, in an answer received at `received_at`, are final."""
    return received_at - SETTLE - bar + timedelta(microseconds=1)


def covered_until(
    received_at: datetime, bar: timedelta, window: tuple[datetime, datetime], newest_end: datetime | None
) -> datetime:
    """Where the part of `window` an answer received at `received_at` settles ends.

    Bars up to `final_before` are settled; but slots after the newest bar the answer held
    (`newest_end`, its close) that closed within the publication window may be unpublished, so they
    stay unsettled and are asked for again.
    """
    start, end = window
    until = min(end, final_before(received_at, bar))
    unpublished_from = max(newest_end or start, received_at - PUBLICATION_WINDOW - bar + timedelta(microseconds=1))
    return max(start, min(until, unpublished_from))
