"""Waiting for a condition with a deadline, and checking that one keeps holding.

poll() calls a check again and again until it returns something truthy or the deadline
passes; a timeout names what was awaited and the last thing the check returned (or raised).
hold() is the opposite: a check that must stay true for a while.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float, *, what: str, interval: float = 0.1,
         ignore: type[BaseException] | tuple[type[BaseException], ...] = ()) -> T:
    """check()'s first truthy return value.

    check: called with no arguments, first at once, then every `interval` seconds, and once
    more at or after the deadline; `timeout` and `interval` are seconds (floats).
    what: what is awaited, in the words of an error message ("the agent to write haproxy.cfg").
    ignore: exception type(s) that mean "not yet" (a server still starting, a file not there
    yet): such an exception counts as a falsy result and is remembered as the last one. Any
    other exception from check() propagates at once.

    Raises AssertionError when `timeout` seconds pass without a truthy result; its message
    names `what` and the last value returned or exception ignored.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = check()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: last {last!r}")
        time.sleep(interval)


def hold(check: Callable[[], Any], seconds: float, *, what: str, interval: float = 0.05) -> None:
    """check() stays truthy for `seconds` (a poll for the absence of a change).

    check is called every `interval` seconds until `seconds` have passed (not at all when
    `seconds` <= 0). Raises AssertionError naming `what` and the value at the first call that
    returns something falsy; exceptions from check() propagate.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        assert value, f"{what} stopped holding: {value!r}"
        time.sleep(interval)
