"""``--since``: where a report or a canned query starts, given as an age (``7d``, ``36h``) or a date; and
``--as-of``: which version of the warehouse to read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"^(\d+)\s*([dhw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
EVERYTHING = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(text: str | None, now: datetime | None = None) -> datetime:
    """The UTC midnight that starts the window: ``7d`` and ``36h`` the midnight before that long ago,
    ``2026-11-01`` that day's; None: everything.

    Whole days, because the daily rollups and costs cannot start mid-day: every query then covers the
    same span.
    """
    if text is None:
        return EVERYTHING
    match = _AGE.match(text.strip().lower())
    if match:
        moment = (now or datetime.now(UTC)) - int(match.group(1)) * _UNITS[match.group(2)]
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"--since {text!r}: give an age (7d, 36h, 2w) or a date (2026-11-01)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def parse_as_of(text: str | None) -> int | datetime | None:
    """``--as-of``: a version of the ``samples`` table (an integer; every table as of that commit) or a moment
    (RFC 3339; a time without an offset is UTC); None: the current version."""
    if text is None:
        return None
    text = text.strip()
    if text.isdecimal():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of {text!r}: give a version of the samples table (42) or a time "
                         "(2026-11-30T12:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
