"""How Schemathesis writes the values the API document gives a custom
format: durations as taskhost reads them (`5s`, `250ms`, `7d`), within every
range the server allows for that kind of field, and cron expressions."""
import ast
import threading
import zoneinfo

import schemathesis
from hypothesis import strategies as st

# Python 3.11 keeps the AST constructor's recursion depth in one per-process
# counter, so two threads parsing at once can fail with "SystemError: AST
# constructor recursion depth mismatch" (cpython#106905). Hypothesis parses
# the source of Schemathesis's lambdas to describe them, and `--workers 2`
# generates in two threads: a CI run failed on it. One parse at a time.
_parse = ast.parse
_parse_lock = threading.Lock()


def _parse_one_at_a_time(*args, **kwargs):
    with _parse_lock:
        return _parse(*args, **kwargs)


ast.parse = _parse_one_at_a_time


def joined(number, unit):
    # A named function, not a lambda: Hypothesis reads a lambda's source to
    # describe it (see the lock above).
    return f"{number}{unit}"


def duration(name, low, high, units):
    schemathesis.openapi.format(
        name,
        st.builds(joined, st.integers(low, high), st.sampled_from(units)),
    )


# Timeouts, backoffs, jitter, a catch-up window, `wait`: 1-59 s fits every cap.
duration("humantime", 1, 59, ["s"])
# An initial backoff: always at most a maximum one (which is at least 1 s).
duration("humantime-short", 0, 999, ["ms"])
# Retention: 1 minute to 366 days.
duration("humantime-retention", 1, 59, ["m", "h", "d"])
# An interval trigger's period: at least the tenant's shortest (1 s).
duration("humantime-interval", 1, 59, ["s", "m", "h"])
schemathesis.openapi.format(
    "cron",
    st.from_regex(
        r"\A([1-5]?[0-9]|\*) (1?[0-9]|2[0-3]|\*) (1?[1-9]|2[0-8]|\*) ([1-9]|1[0-2]|\*) ([0-6]|\*)\Z"
    ),
)
# Time zones both Python and chrono-tz know.
schemathesis.openapi.format(
    "iana-timezone",
    st.sampled_from(
        sorted(
            z
            for z in zoneinfo.available_timezones()
            if z not in ("Factory", "localtime", "posixrules") and "/" in z
        )
    ),
)
