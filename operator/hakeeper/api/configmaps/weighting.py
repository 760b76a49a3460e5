"""weighting.json in a HAProxy pool's ConfigMap: the parameters of latency-aware weights, from
spec.weighting, in the units the agent computes with (seconds, fractions).

The file exists only with weighting mode Latency. It is not part of haproxy.cfg (the
structure), so a change of it never reloads HAProxy; it is part of the config hash, so a
balancer reports it applied once its agent has read it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

from hakeeper.api.configmaps.haproxy import WEIGHTING_FILE, ConfigError

MEASURES = ("rtime", "ttime")
"""Columns of HAProxy's `show stat` (management guide 9.1, "CSV format"): rtime, the average
response time of the last 1024 requests in ms (HTTP; 0 in mode tcp); ttime, the average total
session time of the last 1024 sessions in ms (mode tcp: a connection's whole life)."""


@dataclasses.dataclass(frozen=True)
class WeightingParams:
    """What the agent needs to move the weights. Durations in seconds, percentages as fractions."""

    interval: float
    """Seconds between two readings of the statistics (and weight moves)."""
    half_life: float
    """Seconds after which a sample counts half in the moving average."""
    floor: float
    """The smallest factor (0 < floor <= 1) of a server's base weight."""
    max_step: float
    """The largest relative change of a factor per interval (0 < max_step <= 1)."""
    measure: Literal["rtime", "ttime"] = "rtime"
    """The `show stat` column read as a server's latency (MEASURES)."""

    @property
    def alpha(self) -> float:
        """The weight of a new sample in the exponential moving average: 1 - 0.5^(interval/halfLife)."""
        return 1.0 - 0.5 ** (self.interval / self.half_life)


def weighting_json(params: WeightingParams) -> str:
    return json.dumps(dataclasses.asdict(params), sort_keys=True, indent=1) + "\n"


def parse_weighting(text: str | None) -> WeightingParams | None:
    """weighting.json back into parameters; None when the file is absent (weighting Static).

    Raises ConfigError on a file the operator would not write.
    """
    if text is None or not text.strip():
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{WEIGHTING_FILE} is not JSON: {exc}") from None
    names = {f.name for f in dataclasses.fields(WeightingParams)}
    if not isinstance(raw, dict) or set(raw) != names:
        raise ConfigError(f"{WEIGHTING_FILE}: expected the keys {', '.join(sorted(names))}")
    try:
        params = WeightingParams(interval=float(raw["interval"]), half_life=float(raw["half_life"]),
                                 floor=float(raw["floor"]), max_step=float(raw["max_step"]), measure=raw["measure"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{WEIGHTING_FILE}: {exc}") from None
    if not (params.interval > 0 and params.half_life > 0 and 0 < params.floor <= 1 and 0 < params.max_step <= 1
            and params.measure in MEASURES):
        raise ConfigError(f"{WEIGHTING_FILE}: values out of range: {raw!r}")
    return params
