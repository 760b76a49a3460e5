"""GTID set arithmetic for both flavors, against a model (plain Python sets) with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakeeper.replicateddatabase.clustering.gtid import MariaDBGtidList, MySQLGtidSet

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "4a22cb58-82db-22f2-8f44-d91bb0530673"


# ---------------------------------------------------------------------------- MySQL

@pytest.mark.parametrize(("text", "canonical"), [
    ("", ""),
    (f"{A}:1-5", f"{A}:1-5"),
    (f"{A}:1-3:4-5", f"{A}:1-5"),                       # adjacent intervals merge
    (f"{A}:7:1-5:6", f"{A}:1-7"),                       # unordered, single numbers
    (f"{B}:1,\n{A}:2-3", f"{A}:2-3,{B}:1"),             # newlines as servers print them; sorted by uuid
    (f"{A.upper()}:1-2", f"{A}:1-2"),                   # case
    (f"{A.replace('-', '')}:1-2", f"{A}:1-2"),          # uuid without dashes
    (f"{A}:1-2,{A}:3", f"{A}:1-3"),                     # the same uuid twice
    (f"{A}:1-2:blue:5-6", f"{A}:1-2,{A}:blue:5-6"),     # MySQL 8.4 tagged GTIDs
])
def test_mysql_parse_and_format(text: str, canonical: str) -> None:
    assert str(MySQLGtidSet.parse(text)) == canonical


@pytest.mark.parametrize("bad", ["nonsense", f"{A}", f"{A}:0", f"{A}:5-3", "1-2-3", f"{A}:1-x"])
def test_mysql_parse_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        MySQLGtidSet.parse(bad)


@pytest.mark.parametrize(("left", "right", "errant", "comparison"), [
    (f"{A}:1-10", f"{A}:1-10", "", "equal"),
    (f"{A}:1-10", f"{A}:1-12", "", "subset"),
    (f"{A}:1-12", f"{A}:1-10", f"{A}:11-12", "superset"),
    (f"{A}:1-10,{B}:1", f"{A}:1-12", f"{B}:1", "diverged"),          # a replica's own write
    (f"{A}:1-5:7-9", f"{A}:1-9", "", "subset"),                        # a hole
    (f"{A}:1-9", f"{A}:1-5:7-9", f"{A}:6", "superset"),
    ("", f"{A}:1", "", "subset"),
])
def test_mysql_subtract_and_compare(left: str, right: str, errant: str, comparison: str) -> None:
    mine, theirs = MySQLGtidSet.parse(left), MySQLGtidSet.parse(right)
    assert str(mine.subtract(theirs)) == errant
    assert mine.compare(theirs) == comparison
    assert mine.contains(theirs) == (comparison in ("equal", "superset"))


def test_mysql_origins_and_position() -> None:
    s = MySQLGtidSet.parse(f"{A}:1-3,{B}:1-2:tag:4")
    assert s.origins() == {A, B}
    assert str(s.from_origins(frozenset({B}))) == f"{B}:1-2,{B}:tag:4"
    assert s.position_text() == str(s) and s.count() == 6


uuids = st.sampled_from([A, B])
gtid_items = st.sets(st.tuples(uuids, st.integers(min_value=1, max_value=40)), max_size=30)


def _mysql_from(items: set[tuple[str, int]]) -> MySQLGtidSet:
    return MySQLGtidSet.parse(",".join(f"{u}:{n}" for u, n in sorted(items)))


def _items(s: MySQLGtidSet) -> set[tuple[str, int]]:
    return {(key, n) for key, intervals in s.sources for a, b in intervals for n in range(a, b + 1)}


@given(gtid_items, gtid_items)
def test_mysql_sets_behave_like_sets(x: set, y: set) -> None:
    sx, sy = _mysql_from(x), _mysql_from(y)
    assert _items(sx.union(sy)) == x | y
    assert _items(sx.subtract(sy)) == x - y
    assert sx.contains(sy) == (y <= x)
    assert MySQLGtidSet.parse(str(sx)) == sx  # the text round-trips


# ---------------------------------------------------------------------------- MariaDB

@pytest.mark.parametrize(("text", "canonical", "position"), [
    ("", "", ""),
    ("0-1-100", "0-1-100", "0-1-100"),
    ("0-2-110,0-1-100", "0-1-100,0-2-110", "0-2-110"),       # state: newest per server; position: per domain
    ("1-1-5,0-1-100", "0-1-100,1-1-5", "0-1-100,1-1-5"),     # two domains
    ("0-1-5,0-1-9", "0-1-9", "0-1-9"),                       # the same server twice: the newest
    ("0-1-0", "", ""),                                       # seq 0 is nothing
])
def test_mariadb_parse_format_position(text: str, canonical: str, position: str) -> None:
    s = MariaDBGtidList.parse(text)
    assert str(s) == canonical and s.position_text() == position


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", "1:2"])
def test_mariadb_parse_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        MariaDBGtidList.parse(bad)


@pytest.mark.parametrize(("member", "primary", "errant"), [
    ("0-1-100", "0-1-100,0-2-110", ""),                  # an old replica behind a new primary: nothing extra
    ("0-1-105", "0-1-100,0-2-110", "0-1-105"),           # old primary's unreplicated tail (server 1 past 100)
    ("0-1-100,0-3-101", "0-1-100,0-2-110", "0-3-101"),   # a replica's own write
    ("0-1-100", "0-1-100", ""),
    ("0-1-100,1-3-1", "0-1-100", "1-3-1"),               # a write in another domain
])
def test_mariadb_errant_is_what_the_primary_lacks(member: str, primary: str, errant: str) -> None:
    assert str(MariaDBGtidList.parse(member).subtract(MariaDBGtidList.parse(primary))) == errant


def test_mariadb_progress_and_origins() -> None:
    executed = MariaDBGtidList.parse("0-1-100,0-2-105")
    received = MariaDBGtidList.parse("0-2-110")
    progress = executed.union(received)
    assert str(progress) == "0-1-100,0-2-110"
    assert progress.contains(executed) and not executed.contains(received)
    assert executed.compare(progress) == "subset" and progress.compare(executed) == "superset"
    assert MariaDBGtidList.parse("0-3-1").compare(executed) == "diverged"
    assert progress.origins() == {"1", "2"}
    assert str(progress.from_origins(frozenset({"2"}))) == "0-2-110"


entries = st.dictionaries(st.tuples(st.integers(0, 2), st.integers(1, 4)), st.integers(1, 50), max_size=6)


def _mariadb_from(d: dict) -> MariaDBGtidList:
    return MariaDBGtidList.parse(",".join(f"{k[0]}-{k[1]}-{v}" for k, v in d.items()))


@given(entries, entries)
def test_mariadb_lists_behave_like_per_server_high_water_marks(x: dict, y: dict) -> None:
    sx, sy = _mariadb_from(x), _mariadb_from(y)
    assert dict(sx.union(sy).entries) == {k: max(x.get(k, 0), y.get(k, 0)) for k in x.keys() | y.keys()}
    assert dict(sx.subtract(sy).entries) == {k: v for k, v in x.items() if v > y.get(k, 0)}
    assert sx.contains(sy) == all(x.get(k, 0) >= v for k, v in y.items())
    assert sx.union(sy).contains(sx) and sx.union(sy).contains(sy)
    assert MariaDBGtidList.parse(str(sx)) == sx
