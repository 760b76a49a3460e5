"""The table the failover benchmark prints (percentiles: tests.support.stats)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.support.stats import percentile


def row(label: str, values: Sequence[float]) -> str:
    if not values:
        return f"| {label:<50} | {0:>3} | {'-':>7} | {'-':>7} | {'-':>7} |"
    return (f"| {label:<50} | {len(values):>3} | {percentile(values, 50):>6.2f}s | {percentile(values, 95):>6.2f}s "
            f"| {max(values):>6.2f}s |")


def table(rows: list[tuple[str, Sequence[float]]]) -> str:
    head = f"| {'measurement':<50} | {'n':>3} | {'p50':>7} | {'p95':>7} | {'max':>7} |"
    rule = f"|{'-' * 52}|{'-' * 5}|{'-' * 9}|{'-' * 9}|{'-' * 9}|"
    return "\n".join([head, rule] + [row(label, values) for label, values in rows])
