"""Latency-aware weights (spec.weighting mode Latency): read the servers' response times from
HAProxy's statistics, keep a moving average, and scale each server's base weight by how fast
it is compared with the fastest one.

Pure functions (`parse_stat`, `advance`, `effective`, `report`) and one small stateful
`Tracker` that the agent keeps between passes; the agent does the I/O (`show stat` on the
runtime API, `set weight` through haproxy_runtime.plan).

The rule, per interval, for every server that takes requests and has a latency sample:

    target = clamp(fastest / latency, floor, 1)       proportional to the speed
    target = factor if |target - factor| < DEADBAND x factor   small changes are noise: keep still
    next   = factor + GAIN * (target - factor)        damped: half way there
    next   = clamp(next, factor * (1 - maxStep), factor * (1 + maxStep), floor, 1)

Why damped: a server's latency rises with the share of traffic it gets. The undamped rule
(next = target) overshoots: the server slowed by its share gets little, becomes fast, gets
much, and so on, and never settles (tests/unit/test_haproxy_weighting.py shows both).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Mapping, Sequence

from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.configmaps.haproxy import SlotEntry
from hakeeper.api.configmaps.weighting import WeightingParams

GAIN = 0.5
"""The fraction of the way to the target a factor moves per interval (under-relaxation)."""
DEADBAND = 0.05
"""A target closer than this fraction of the factor to it leaves the factor as it is."""
MAX_WEIGHT = 256
"""HAProxy's largest server weight (configuration manual 5.2, "weight")."""
RESOLUTION = 100
"""Base weights are scaled up to about this many steps (within MAX_WEIGHT), so that a base weight
of 1 can still be lowered: HAProxy weights are integers."""
REPORT_REFRESH = 60.0
"""Seconds after which the report is sent again though the weights did not change (latencies move)."""


class StatError(ValueError):
    """`show stat` answered something this module cannot read."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One server's row of `show stat` (management guide 9.1): cumulated sessions and the
    averages, in milliseconds, of its last 1024 requests."""

    server: str
    sessions: int
    """stot: sessions (requests, with one per connection) sent to the server since start."""
    rtime: int
    """Average response time (HTTP; 0 in mode tcp)."""
    ttime: int
    """Average total session time."""

    def latency(self, measure: str) -> int:
        return self.rtime if measure == "rtime" else self.ttime


@dataclasses.dataclass(frozen=True)
class ServerWeighting:
    """What the agent remembers about one backend between intervals."""

    latency: float | None = None
    """Moving average of its latency in ms (None: no sample yet)."""
    factor: float = 1.0
    """The share of its base weight it gets (floor..1)."""
    sessions: int = 0
    """stot at the last reading: a sample counts only when new requests went to the server."""


def parse_stat(text: str, backend: str = configmap.BACKEND) -> dict[str, Sample]:
    """The server rows of `backend` in a `show stat` reply (CSV; first line `# pxname,svname,...`),
    by server name. Raises StatError when the header or a needed column is missing."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise StatError(f"unexpected `show stat` reply: {text[:200]!r}")
    rows = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    out = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        try:
            out[row["svname"]] = Sample(server=row["svname"], sessions=int(row["stot"] or 0),
                                        rtime=int(row["rtime"] or 0), ttime=int(row["ttime"] or 0))
        except (KeyError, ValueError) as exc:
            raise StatError(f"unexpected `show stat` row for {row.get('svname')!r}: {exc}") from None
    return out


def advance(state: Mapping[str, ServerWeighting], samples: Mapping[str, Sample], params: WeightingParams,
            active: Sequence[str]) -> dict[str, ServerWeighting]:
    """One interval: the new state of every backend in `active` (the backends that take requests,
    by name), from its previous state and its `show stat` sample (by backend name).

    A backend without new requests since the last reading keeps its average and its factor
    (and one never measured keeps factor 1). Backends not in `active` are forgotten (they start anew at factor 1).
    """
    averaged: dict[str, ServerWeighting] = {}
    fresh = set()
    for name in active:
        before = state.get(name, ServerWeighting())
        sample = samples.get(name)
        if sample is None:
            averaged[name] = before
            continue
        value = sample.latency(params.measure)
        average: float | None = before.latency
        if sample.sessions > before.sessions:
            # 0 is a real value: HAProxy counts whole milliseconds, and a fast server answers in less
            average = float(value) if average is None else average + params.alpha * (value - average)
            fresh.add(name)
        # else no new request (or the counters restarted with a new worker): nothing learnt
        averaged[name] = dataclasses.replace(before, latency=average, sessions=sample.sessions)
    known = [s.latency for s in averaged.values() if s.latency is not None]
    if not known:
        return averaged
    fastest = max(min(known), 1.0)  # HAProxy counts whole ms; below 1 ms every server is as fast
    out = {}
    for name, s in averaged.items():
        out[name] = s if s.latency is None or name not in fresh else dataclasses.replace(
            s, factor=next_factor(s.factor, fastest, s.latency, params))
    return out


def next_factor(factor: float, fastest: float, latency: float, params: WeightingParams) -> float:
    """The factor after one interval (see the module's docstring); within floor..1."""
    target = min(1.0, max(params.floor, fastest / max(latency, 1.0)))
    if abs(target - factor) < DEADBAND * factor:
        return factor
    moved = factor + GAIN * (target - factor)
    moved = min(max(moved, factor * (1 - params.max_step)), factor * (1 + params.max_step))
    return min(1.0, max(params.floor, moved))


def scale(entries: Sequence[SlotEntry]) -> int:
    """What every base weight is multiplied by: as many steps as fit, at most RESOLUTION, so that
    the largest base weight times it stays within MAX_WEIGHT."""
    largest = max((e.weight for e in entries), default=1)
    return max(1, min(RESOLUTION, MAX_WEIGHT // max(largest, 1)))


def weight(base: int, factor: float, times: int) -> int:
    """round(base x times x factor) within 1..MAX_WEIGHT; 0 for a base of 0 (0 drains the server)."""
    if base <= 0:
        return 0
    return min(MAX_WEIGHT, max(1, round(base * times * factor)))


def effective(entries: Sequence[SlotEntry], factors: Mapping[str, float]) -> list[SlotEntry]:
    """servers.json with the weights HAProxy should run: each base scaled (`scale`) and times its
    backend's factor (by backend name; 1 when it has none). Relative weights between backends
    without a factor stay those of the bases."""
    times = scale(entries)
    return [dataclasses.replace(e, weight=weight(e.weight, factors.get(e.name, 1.0), times)) for e in entries]


def report(entries: Sequence[SlotEntry], state: Mapping[str, ServerWeighting]) -> str:
    """The effective-weights annotation: JSON list of {backend, base, weight, percent, latencyMs}
    (api/weighting.py EffectiveWeight), by backend name."""
    factors = {name: s.factor for name, s in state.items()}
    rows = []
    for base, applied in zip(entries, effective(entries, factors), strict=True):
        s = state.get(base.name, ServerWeighting())
        latency = None if s.latency is None else round(s.latency, 1)
        rows.append({"backend": base.name, "base": base.weight, "weight": applied.weight,
                     "percent": round(s.factor * 100), "latencyMs": latency})
    return json.dumps(sorted(rows, key=lambda r: str(r["backend"])), separators=(",", ":"))


def report_key(text: str | None) -> str | None:
    """The part of a report whose change is worth a write at once: the weights, and which backends
    have been measured; not the latencies themselves (they move every interval)."""
    if text is None:
        return None
    try:
        rows = json.loads(text)
        return json.dumps([[r["backend"], r["base"], r["weight"], r["latencyMs"] is None] for r in rows])
    except (ValueError, TypeError, KeyError):
        return None


class Tracker:
    """The agent's memory between passes: per backend, its average latency and factor; and when
    the statistics were last read. Not thread-safe (one agent loop drives it)."""

    def __init__(self) -> None:
        self.state: dict[str, ServerWeighting] = {}
        self.last: float | None = None
        self.params: WeightingParams | None = None

    def observe(self, params: WeightingParams | None, entries: Sequence[SlotEntry],
                read_stat: Callable[[], str], now: float) -> dict[str, float]:
        """Read the statistics once per interval (at most) and advance; the factors by backend name.
        With params None (weighting Static) everything is forgotten."""
        if params is None:
            self.state, self.last, self.params = {}, None, None
            return {}
        if params != self.params:
            self.params, self.last = params, None
        if self.last is None or now - self.last >= params.interval:
            by_slot = parse_stat(read_stat())
            samples = {e.name: dataclasses.replace(by_slot[e.server], server=e.name)
                       for e in entries if e.server in by_slot}
            active = [e.name for e in entries if e.state == "ready" and e.weight > 0]
            self.state = advance(self.state, samples, params, active)
            self.last = now
        return {name: s.factor for name, s in self.state.items()}

    def due_in(self, now: float) -> float | None:
        """Seconds until the next reading (None: weighting Static)."""
        if self.params is None:
            return None
        if self.last is None:
            return 0.0
        return max(0.0, self.last + self.params.interval - now)

