"""Two directors, each running keepalived with the file its agent would write (its own VRRP
priority), real servers behind them with DR (scenarios.catalog)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.lvs


@pytest.mark.lvs("dr-failover")
def test_the_backup_director_takes_over_while_a_client_loops_and_keeps_the_vip(lvs):
    result = lvs("dr-failover")
    attempts = result["attempts"]
    before = [name for t, name in attempts if t < result["failed_at"]]
    after = [name for t, name in attempts if t > result["failed_at"] + result["vip_moved_after"]]
    assert {"r1", "r2", "r3"} <= set(before)
    # the client's loop gets answers again through the new master (errors only in the gap)
    answered = [name for name in after if not name.startswith("error")]
    assert len(answered) >= 10 and {"r1", "r2", "r3"} <= set(answered)
    # preempt false: the old master came back and left the VIP where it went
    assert result["held"] and all(result["held"]), result["held"]
    assert "Entering BACKUP STATE" in result["returned_log"]
    assert "Entering MASTER STATE" not in result["returned_log"]


@pytest.mark.lvs("dr-sync", "dr-no-sync")
def test_connection_sync_keeps_established_connections_across_a_director_failover(lvs):
    synced = lvs("dr-sync")
    # the backup director had the connections in its table before the failure
    assert len(synced["synced"]) >= 3, synced["backup_table_before"]
    for connection in synced["connections"]:
        assert connection["error"] is None
        names = {name for _, name in connection["echoes"]}
        assert len(names) == 1, names  # one real server all along
        assert sum(1 for t, _ in connection["echoes"] if t > connection["moved_at"]) >= 20

    # the control, connectionSync false: the new master has no entry for them, and its own
    # stack answers their next segment with a reset
    unsynced = lvs("dr-no-sync")
    for connection in unsynced["connections"]:
        assert connection["error"] is not None and "Reset" in connection["error"], connection["error"]
        assert not any(t > connection["moved_at"] and name != "error" for t, name in connection["echoes"])
