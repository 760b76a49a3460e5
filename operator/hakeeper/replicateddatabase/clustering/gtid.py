"""GTID set arithmetic for both flavors (pure).

MySQL 8: a GTID is `source_uuid[:tag]:transaction_number`; a set is, per source, a list of
closed intervals (`3e11fa47-...:1-5:7-9`). Set operations are exact.

MariaDB: a GTID is `domain-server_id-seq_no`. Servers do not expose sets of intervals but
lists with the newest GTID per (domain, server_id) (`gtid_binlog_state`) or per domain
(`gtid_binlog_pos`, `gtid_slave_pos`, `Gtid_IO_Pos`). With `gtid_strict_mode` each domain is
one ordered history, so "(domain, server) up to seq n" stands for every transaction that
server wrote in that domain up to n. The arithmetic here is done on those (domain, server)
entries: a list *contains* another when, for every (domain, server) of the other, it has
reached at least the same seq_no; *subtract* keeps the entries of the left side that the
right side has not reached. Compared against a full `gtid_binlog_state` this finds errant
transactions (a replica's own writes, or an old primary's unreplicated tail) exactly.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal, TypeVar

Comparison = Literal["equal", "superset", "subset", "diverged"]
S = TypeVar("S", bound="GtidSet")


class GtidSet(ABC):
    """What both flavors' sets can do; each flavor parses its own server text."""

    @abstractmethod
    def union(self: S, other: S) -> S: ...

    @abstractmethod
    def subtract(self: S, other: S) -> S:
        """The transactions in self that other lacks."""

    @abstractmethod
    def is_empty(self) -> bool: ...

    @abstractmethod
    def origins(self) -> frozenset[str]:
        """Who wrote the transactions: server_uuid (MySQL) or server_id as text (MariaDB)."""

    @abstractmethod
    def from_origins(self: S, origins: frozenset[str]) -> S:
        """Only the transactions written by these origins."""

    @abstractmethod
    def position_text(self) -> str:
        """The text a server's wait function takes (WAIT_FOR_EXECUTED_GTID_SET / MASTER_GTID_WAIT)."""

    @abstractmethod
    def behind(self: S, other: S) -> int:
        """How many transactions `other` has that this set lacks (>= 0): the GTID distance."""

    def contains(self, other: GtidSet) -> bool:
        return other.subtract(self).is_empty()

    def compare(self, other: GtidSet) -> Comparison:
        mine, theirs = self.contains(other), other.contains(self)
        if mine and theirs:
            return "equal"
        if mine:
            return "superset"
        if theirs:
            return "subset"
        return "diverged"

    def __bool__(self) -> bool:
        return not self.is_empty()


# --------------------------------------------------------------------------------- MySQL

_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_TAG = r"[a-zA-Z_][a-zA-Z0-9_]{0,31}"
Interval = tuple[int, int]


def _normalize(intervals: list[Interval]) -> tuple[Interval, ...]:
    """Sorted, merged closed intervals; adjacent ones ([1,3] and [4,5]) merge too."""
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((a, b) for a, b in out)


def _subtract_intervals(left: tuple[Interval, ...], right: tuple[Interval, ...]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in left:
        pieces = [(start, end)]
        for r_start, r_end in right:
            next_pieces = []
            for a, b in pieces:
                if r_end < a or r_start > b:
                    next_pieces.append((a, b))
                    continue
                if a < r_start:
                    next_pieces.append((a, r_start - 1))
                if r_end < b:
                    next_pieces.append((r_end + 1, b))
            pieces = next_pieces
        out.extend(pieces)
    return out


@dataclass(frozen=True)
class MySQLGtidSet(GtidSet):
    """`uuid[:tag] -> intervals`, normalized (lowercase uuid with dashes, merged intervals)."""

    sources: tuple[tuple[str, tuple[Interval, ...]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> MySQLGtidSet:
        text = (text or "").replace("\n", "").replace(" ", "")
        if not text:
            return cls()
        merged: dict[str, list[Interval]] = {}
        for part in text.split(","):
            if not part:
                continue
            m = re.fullmatch(rf"({_UUID})((?::(?:{_TAG}|\d+(?:-\d+)?))+)", part)
            if not m:
                raise ValueError(f"not a MySQL GTID set member: {part!r}")
            uuid = _canonical_uuid(m.group(1))
            tag = ""
            for item in m.group(2).split(":")[1:]:
                if re.fullmatch(_TAG, item):
                    tag = item.lower()  # a tag applies to the intervals after it
                    continue
                start, _, end = item.partition("-")
                a, b = int(start), int(end or start)
                if a < 1 or b < a:
                    raise ValueError(f"bad GTID interval {item!r} in {part!r}")
                merged.setdefault(f"{uuid}:{tag}" if tag else uuid, []).append((a, b))
        return cls._build(merged)

    @classmethod
    def _build(cls, merged: dict[str, list[Interval]]) -> MySQLGtidSet:
        return cls(tuple(sorted((k, _normalize(v)) for k, v in merged.items() if v)))

    def _as_dict(self) -> dict[str, tuple[Interval, ...]]:
        return dict(self.sources)

    def union(self, other: MySQLGtidSet) -> MySQLGtidSet:
        merged: dict[str, list[Interval]] = {}
        for src in (self, other):
            for key, intervals in src.sources:
                merged.setdefault(key, []).extend(intervals)
        return self._build(merged)

    def subtract(self, other: MySQLGtidSet) -> MySQLGtidSet:
        theirs = other._as_dict()
        return self._build({k: _subtract_intervals(v, theirs.get(k, ())) for k, v in self.sources})

    def is_empty(self) -> bool:
        return not self.sources

    def origins(self) -> frozenset[str]:
        return frozenset(key.split(":")[0] for key, _ in self.sources)

    def from_origins(self, origins: frozenset[str]) -> MySQLGtidSet:
        return MySQLGtidSet(tuple((k, v) for k, v in self.sources if k.split(":")[0] in origins))

    def count(self) -> int:
        return sum(b - a + 1 for _, intervals in self.sources for a, b in intervals)

    def behind(self, other: MySQLGtidSet) -> int:
        return other.subtract(self).count()

    def position_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        parts = []
        for key, intervals in self.sources:
            ranges = ":".join(f"{a}" if a == b else f"{a}-{b}" for a, b in intervals)
            parts.append(f"{key}:{ranges}")
        return ",".join(parts)


def _canonical_uuid(text: str) -> str:
    h = text.replace("-", "").lower()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# ------------------------------------------------------------------------------- MariaDB

_MARIADB_GTID = re.compile(r"(\d+)-(\d+)-(\d+)")


@dataclass(frozen=True)
class MariaDBGtidList(GtidSet):
    """(domain, server_id) -> newest seq_no, as in `gtid_binlog_state` (see module docstring)."""

    entries: tuple[tuple[tuple[int, int], int], ...] = field(default=())

    @classmethod
    def parse(cls, text: str | None) -> MariaDBGtidList:
        merged: dict[tuple[int, int], int] = {}
        for part in (text or "").replace("\n", "").replace(" ", "").split(","):
            if not part:
                continue
            m = _MARIADB_GTID.fullmatch(part)
            if not m:
                raise ValueError(f"not a MariaDB GTID: {part!r} (expected domain-server_id-seq_no)")
            domain, server, seq = (int(g) for g in m.groups())
            merged[(domain, server)] = max(seq, merged.get((domain, server), 0))
        return cls._build(merged)

    @classmethod
    def _build(cls, merged: dict[tuple[int, int], int]) -> MariaDBGtidList:
        return cls(tuple(sorted((k, v) for k, v in merged.items() if v > 0)))

    def _as_dict(self) -> dict[tuple[int, int], int]:
        return dict(self.entries)

    def union(self, other: MariaDBGtidList) -> MariaDBGtidList:
        merged = self._as_dict()
        for key, seq in other.entries:
            merged[key] = max(seq, merged.get(key, 0))
        return self._build(merged)

    def subtract(self, other: MariaDBGtidList) -> MariaDBGtidList:
        theirs = other._as_dict()
        return self._build({k: seq for k, seq in self.entries if seq > theirs.get(k, 0)})

    def is_empty(self) -> bool:
        return not self.entries

    def origins(self) -> frozenset[str]:
        return frozenset(str(server) for (_, server), _ in self.entries)

    def from_origins(self, origins: frozenset[str]) -> MariaDBGtidList:
        return MariaDBGtidList(tuple((k, v) for k, v in self.entries if str(k[1]) in origins))

    def behind(self, other: MariaDBGtidList) -> int:
        """Per replication domain, the newest sequence number's distance (MariaDB numbers the
        transactions of a domain in one sequence, whichever server wrote them)."""
        mine = {d: seq for d, (_, seq) in self.domain_positions().items()}
        return sum(max(0, seq - mine.get(d, 0)) for d, (_, seq) in other.domain_positions().items())

    def domain_positions(self) -> dict[int, tuple[int, int]]:
        """Per domain the newest GTID (server_id, seq_no): what gtid_binlog_pos shows."""
        out: dict[int, tuple[int, int]] = {}
        for (domain, server), seq in self.entries:
            if domain not in out or seq > out[domain][1]:
                out[domain] = (server, seq)
        return out

    def position_text(self) -> str:
        """`gtid_binlog_pos` form, the argument MASTER_GTID_WAIT and gtid_slave_pos take."""
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.domain_positions().items()))

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for (d, s), n in self.entries)
