"""The agent's carry-over of a SourceIP stick table across a reload (agents/haproxy_sticktable.py)."""

from __future__ import annotations

from hakeeper.agents.haproxy_sticktable import in_use, parse_table, restore_commands

# `show table servers` of HAProxy 2.6.12 (a run of tests/integration/test_haproxy_peers.py)
SHOWN = """# table: servers, type: ipv6, size:1048576, used:3
0x55d274a44ac0: key=::ffff:127.9.0.2 use=0 exp=1799973 server_id=1 server_key=s1
0x7f17d4042820: key=2001:db8::7 use=0 exp=1799981 server_id=12 server_key=s12
0x7f84a8046440: key=::ffff:127.9.0.3 use=0 exp=1799996 server_id=0 server_key=-

"""


def test_parse_table_keeps_clients_with_a_server():
    assert parse_table(SHOWN) == {"::ffff:127.9.0.2": 1, "2001:db8::7": 12}
    assert parse_table("No such table\n") == {}
    assert parse_table("0x1: key=1.2.3.4; shutdown use=0 server_id=3\n") == {}  # never a key that is not an address


def test_restore_commands_skip_what_the_new_worker_placed_itself():
    saved = {"::ffff:127.9.0.2": 1, "2001:db8::7": 12}
    assert restore_commands(saved, {"2001:db8::7": 3}) == ["set table servers key ::ffff:127.9.0.2 data.server_id 1"]
    assert restore_commands(saved, saved) == []


def test_in_use_reads_the_configuration():
    assert in_use("backend servers\n    stick-table type ipv6 size 1m expire 30m\n    stick on src\n")
    assert not in_use("backend servers\n    balance source\n")
