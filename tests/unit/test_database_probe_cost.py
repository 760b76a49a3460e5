"""What a database's probe costs (issue 17, bench/scale's profile): a member whose pod has no IP
is recorded unreachable without a connection, and every connection reuses one TLS context."""

from __future__ import annotations

import dataclasses
import ssl

import pymysql.connections

from hakeeper.replicateddatabase.clustering import Cluster, Credentials, Member, MemberState, Policy
from hakeeper.replicateddatabase.clustering.members import NOT_ADDRESSED
from hakeeper.replicateddatabase.clustering.ops import PREFERRED_TLS, Connection

from .fake_mysql import FakeFleet

CREDENTIALS = Credentials("root-secret", "replication-secret", "operator-secret")


class CountingFleet(FakeFleet):
    """A FakeFleet that records which members were probed."""

    def __init__(self, flavor: str) -> None:
        super().__init__(flavor)
        self.probed: list[str] = []

    def gather(self, member: Member) -> MemberState:
        self.probed.append(member.name)
        return super().gather(member)


def test_a_member_without_a_pod_ip_is_unreachable_without_a_probe() -> None:
    fleet = CountingFleet("mariadb")
    # db-2's pod has no IP yet: its server (the fake's) would answer, were it asked
    members = [*fleet.members[:2], dataclasses.replace(fleet.members[2], addressed=False)]
    states = Cluster("mariadb", CREDENTIALS, Policy(), ops=fleet).gather(members, primary="db-0")
    assert sorted(fleet.probed) == ["db-0", "db-1"]
    assert (states["db-2"].reachable, states["db-2"].error) == (False, NOT_ADDRESSED)
    assert states["db-1"].reachable and states["db-0"].reachable


def test_every_connection_shares_one_preferred_tls_context() -> None:
    first, second = (Connection(host="127.0.0.1", defer_connect=True) for _ in range(2))
    assert first.ctx is second.ctx is PREFERRED_TLS
    # pymysql's PREFERRED mode kept: TLS when offered, not required, no certificate check
    assert first.ssl and not first._ssl_required
    assert PREFERRED_TLS.verify_mode == ssl.CERT_NONE and not PREFERRED_TLS.check_hostname
    # the control: pymysql alone builds a context (and loads the CA bundle) per connection
    plain = [pymysql.connections.Connection(host="127.0.0.1", defer_connect=True) for _ in range(2)]
    assert plain[0].ctx is not plain[1].ctx
