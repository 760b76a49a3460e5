"""A restore up to a GTID (spec.restore.gtid), pure: the target's canonical text, whether one
GTID position includes another, and the same rule in awk for the restoring script.

"Includes" is what a restore needs of a position, not set equality:

- MariaDB: a position is one GTID per replication domain, `domain-server_id-seq_no`, and each
  domain is one ordered history whichever server wrote it (gtid_strict_mode; MariaDB
  documentation, "Global Transaction ID", "gtid_binlog_pos"). `outer` includes `inner` when,
  for every domain of `inner`, `outer` has the domain with a sequence number at least as high.
  The server id plays no part: a failover changes it, not the history.
- MySQL: a GTID set (`uuid[:tag]:interval...`); `outer` includes `inner` when every
  transaction of `inner` is in `outer` (GTID_SUBSET(inner, outer): MySQL 9.7 Reference Manual
  14.18.2 "Functions Used with Global Transaction Identifiers").

The restoring script chooses its base (the newest backup whose position the target includes)
and checks, after the replay, that the server's position includes the target, with INCLUDES_AWK;
the unit tier runs it against `includes` on the same inputs.
"""

from __future__ import annotations

import re

from hakeeper.replicateddatabase.clustering.gtid import MariaDBGtidList, MySQLGtidSet

_CANONICAL = re.compile(r"^[0-9a-z_:,-]*$")
"""What a canonical target may hold: it is written into a script between single quotes."""


class GtidError(ValueError):
    """A GTID that is not in its flavor's form."""


def canonical(flavor: str, text: str) -> str:
    """`text` in the form the scripts compare: MariaDB `domain-server-seq` sorted by domain,
    one per domain (the newest when several are given); MySQL lowercase uuids with dashes and
    merged intervals (as the server prints gtid_executed, without its line breaks).

    Raises GtidError when `text` is not a position (MariaDB) or set (MySQL), or is empty."""
    try:
        out = MariaDBGtidList.parse(text).position_text() if flavor == "mariadb" else str(MySQLGtidSet.parse(text))
    except ValueError as exc:
        raise GtidError(f"{text!r} is not a {flavor} GTID: {exc}") from None
    if not out or not _CANONICAL.fullmatch(out):
        raise GtidError(f"{text!r} names no transaction: a restore needs a GTID to stop at")
    return out


def includes(flavor: str, outer: str, inner: str) -> bool:
    """Whether position `outer` includes every transaction of `inner` (module docstring); both
    in the flavor's text form, "" for none. Raises GtidError for a text that is not a GTID."""
    try:
        if flavor == "mariadb":
            have = {d: seq for d, (_, seq) in MariaDBGtidList.parse(outer).domain_positions().items()}
            need = MariaDBGtidList.parse(inner).domain_positions()
            return all(have.get(d, 0) >= seq for d, (_, seq) in need.items())
        return MySQLGtidSet.parse(outer).contains(MySQLGtidSet.parse(inner))
    except ValueError as exc:
        raise GtidError(str(exc)) from None


INCLUDES_AWK = r"""
function includes(outer, inner, flavor,   n, i, a, f, m, j, u, key, r, lo, hi, k, c, K, L, H, ok, top) {
  if (flavor == "mariadb") {
    n = split(outer, a, ",")
    for (i = 1; i <= n; i++)
      if (split(a[i], f, "-") == 3 && (!((f[1] + 0) in top) || top[f[1] + 0] < f[3] + 0)) top[f[1] + 0] = f[3] + 0
    n = split(inner, a, ",")
    for (i = 1; i <= n; i++)
      if (split(a[i], f, "-") == 3 && !(((f[1] + 0) in top) && top[f[1] + 0] >= f[3] + 0)) return 0
    return 1
  }
  c = 0
  n = split(outer, a, ",")
  for (i = 1; i <= n; i++) {
    m = split(a[i], f, ":"); u = tolower(f[1]); key = u
    for (j = 2; j <= m; j++) {
      if (f[j] ~ /^[0-9]/) {
        split(f[j], r, "-"); c++; K[c] = key; L[c] = r[1] + 0; H[c] = (r[2] == "" ? r[1] : r[2]) + 0
      } else key = u ":" tolower(f[j])
    }
  }
  n = split(inner, a, ",")
  for (i = 1; i <= n; i++) {
    m = split(a[i], f, ":"); u = tolower(f[1]); key = u
    for (j = 2; j <= m; j++) {
      if (f[j] ~ /^[0-9]/) {
        split(f[j], r, "-"); lo = r[1] + 0; hi = (r[2] == "" ? r[1] : r[2]) + 0; ok = 0
        for (k = 1; k <= c; k++) if (K[k] == key && L[k] <= lo && hi <= H[k]) { ok = 1; break }
        if (!ok) return 0
      } else key = u ":" tolower(f[j])
    }
  }
  return 1
}
"""
"""awk: includes(outer, inner, flavor) as `includes` decides, for canonical texts (canonical,
or as the server prints them): an `inner` interval must lie in one interval of `outer`, which
holds when `outer`'s intervals are merged. Sequence numbers compare as awk numbers (doubles:
exact up to 2^53). No single quote in it: it goes inside a single-quoted awk program."""


def includes_sh(outer: str, inner: str) -> str:
    """sh: a command that succeeds when the GTID text `outer` includes `inner` (INCLUDES_AWK, for
    $HK_FLAVOR); each argument is a shell word (a quoted variable, e.g. '"$start"'), not escaped
    here."""
    return (f"awk -v outer={outer} -v inner={inner} -v flavor=\"$HK_FLAVOR\" '{INCLUDES_AWK}"
            "  BEGIN { exit !includes(outer, inner, flavor) }'")
