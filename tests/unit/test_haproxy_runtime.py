"""The runtime API's pure parts: parsing HAProxy's replies and planning commands."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents.haproxy_runtime import RuntimeApiError, ServerState
from hakeeper.loadbalancerpool.haproxy.config import SlotEntry

# replies of haproxy 2.6.12 (Debian 12), recorded from a running process
SHOW_SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 servers 1 s1 127.0.20.11 2 4 1 1 0 6 3 3 6 0 0 0 - 8000 - 0 0 - - 0
3 servers 2 s2 0.0.0.0 0 5 1 1 1 1 0 0 14 0 0 0 - 0 - 0 0 - - 0
3 servers 3 s3 127.0.20.12 2 12 3 3 622 8 2 0 6 0 0 0 - 8000 - 0 0 - - 0

"""
SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
15612           master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4
# workers
15761           worker          1               0d00h00m01s     2.6.12-1+deb12u4
# old workers
15614           worker          2               0d00h00m09s     2.6.12-1+deb12u4
# programs

"""


def test_parse_servers_state() -> None:
    s1, s2, s3 = runtime.parse_servers_state(SHOW_SERVERS_STATE)
    assert (s1.name, s1.address, s1.port, s1.weight, s1.admin, s1.up) == ("s1", "127.0.20.11", 8000, 1, "ready", True)
    assert (s2.admin, s2.up, s2.slot) == ("maint", False, 2)
    assert (s3.admin, s3.weight, s3.check_health) == ("drain", 3, 0)


@pytest.mark.parametrize("text", ["", "2\n# be_id\n", "1\n# be_name srv_name\nservers s1\n"])
def test_unexpected_servers_state_is_an_error(text) -> None:
    with pytest.raises(RuntimeApiError):
        runtime.parse_servers_state(text)


def test_parse_proc() -> None:
    proc = runtime.parse_proc(SHOW_PROC)
    assert proc == runtime.Processes(master_pid=15612, reloads=2, failed_reloads=1, workers=(15761,),
                                     old_workers=(15614,))
    with pytest.raises(RuntimeApiError):
        runtime.parse_proc("Unknown command\n")


def server(slot: int, address: str = "0.0.0.0", port: int = 0, admin: int = 0x05, weight: int = 1,
           op: int = 2, checked: bool = False) -> ServerState:
    return ServerState(backend="servers", name=f"s{slot}", id=slot, address=address, port=port, op_state=op,
                       admin_state=admin, weight=weight, initial_weight=weight, check_health=3,
                       check_state=runtime.CHECK_CONFIGURED | 0x04 if checked else 0)


def entry(slot: int, address: str, port: int = 80, weight: int = 1, state: str = "ready") -> SlotEntry:
    return SlotEntry(slot=slot, name=f"b{slot}", address=address, port=port, weight=weight, state=state)


READY, DRAIN, MAINT = 0x00, 0x08, 0x05


def test_plan_adds_a_backend_into_an_empty_slot() -> None:
    assert runtime.plan([server(1), server(2)], [entry(2, "10.0.0.2", weight=3)]) == [
        "set server servers/s2 addr 10.0.0.2 port 80",
        "set weight servers/s2 3",
        "set server servers/s2 state ready",
    ]


def test_plan_removes_drains_and_downs() -> None:
    current = [server(1, "10.0.0.1", 80, READY), server(2, "10.0.0.2", 80, READY), server(3, "10.0.0.3", 80, READY)]
    assert runtime.plan(current, [entry(2, "10.0.0.2", state="draining"), entry(3, "10.0.0.3", state="down")]) == [
        "set server servers/s2 state drain",
        "set server servers/s1 state maint",
        "set server servers/s3 state maint",
    ]


def test_plan_moves_a_serving_slot_through_maintenance() -> None:
    assert runtime.plan([server(1, "10.0.0.1", 80, READY)], [entry(1, "10.0.0.9", 81)]) == [
        "set server servers/s1 state maint",
        "set server servers/s1 addr 10.0.0.9 port 81",
        "set server servers/s1 state ready",
    ]


def test_plan_brings_servers_up_before_taking_others_down() -> None:
    current = [server(1, "10.0.0.1", 80, READY), server(2)]
    commands = runtime.plan(current, [entry(2, "10.0.0.2")])
    assert commands == ["set server servers/s2 addr 10.0.0.2 port 80", "set server servers/s2 state ready",
                        "set server servers/s1 state maint"]


def test_plan_marks_a_checked_slot_down_before_it_leaves_maintenance() -> None:
    """Issue 14 field fault g: a new backend took traffic before any check had passed (57 of 350
    requests went to one whose checks were failing, on a real HAProxy)."""
    assert runtime.plan([server(1, checked=True)], [entry(1, "10.0.0.1")]) == [
        "set server servers/s1 addr 10.0.0.1 port 80",
        # leaving maintenance resets the verdict to barely up: marked down in drain, not in maint
        "set server servers/s1 state drain",
        "set server servers/s1 health down",
        "set server servers/s1 state ready",
    ]
    back = runtime.plan([server(1, "10.0.0.1", 80, MAINT, checked=True)], [entry(1, "10.0.0.1", state="draining")])
    assert back == ["set server servers/s1 state drain", "set server servers/s1 health down"]
    # without a check nothing would bring it up again; a serving slot keeps its verdict
    assert "health" not in " ".join(runtime.plan([server(1)], [entry(1, "10.0.0.1")]))
    assert runtime.plan([server(1, "10.0.0.1", 80, READY, checked=True)], [entry(1, "10.0.0.1", weight=5)]) == [
        "set weight servers/s1 5"]


def test_plan_leaves_health_to_haproxy_and_is_empty_when_applied() -> None:
    # a ready slot failing its checks (op state 0) is left alone: the checks decide
    current = [server(1, "10.0.0.1", 80, READY, op=0), server(2, "10.0.0.2", 80, DRAIN), server(3)]
    assert runtime.plan(current, [entry(1, "10.0.0.1"), entry(2, "10.0.0.2", state="draining")]) == []


def test_plan_refuses_slots_the_running_configuration_lacks() -> None:
    with pytest.raises(RuntimeApiError, match="s9"):
        runtime.plan([server(1)], [entry(9, "10.0.0.9")])


def test_plan_ignores_other_backends() -> None:
    other = ServerState("stats", "s1", 1, "0.0.0.0", 0, 2, 0, 1, 1, 3)
    assert runtime.plan([other, server(1)], []) == []


# -- property: applying the plan reaches servers.json, safely -----------------------------

ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "0.0.0.0"]
slot_states = st.builds(server, slot=st.just(0), address=st.sampled_from(ADDRESSES), port=st.sampled_from([0, 80, 81]),
                        admin=st.sampled_from([READY, DRAIN, MAINT, 0x01, 0x18]), weight=st.integers(0, 4),
                        checked=st.booleans())
desired_entries = st.builds(lambda address, port, weight, state: (address, port, weight, state),
                            st.sampled_from(ADDRESSES[:3]), st.sampled_from([80, 81]), st.integers(0, 4),
                            st.sampled_from(["ready", "draining", "down"]))


class Simulated:
    """HAProxy's reaction to the commands plan() uses, enough to check a plan."""

    def __init__(self, servers: list[ServerState]) -> None:
        self.servers = {s.name: {"address": s.address, "port": s.port, "admin": s.admin, "weight": s.weight,
                                 "checked": s.checked} for s in servers}

    def run(self, command: str) -> None:
        if m := re.fullmatch(r"set server servers/(s\d+) state (ready|drain|maint)", command):
            self.servers[m[1]]["admin"] = m[2]
        elif m := re.fullmatch(r"set server servers/(s\d+) addr (\S+) port (\d+)", command):
            assert self.servers[m[1]]["admin"] == "maint", f"address changed while serving: {command}"
            self.servers[m[1]].update(address=m[2], port=int(m[3]))
        elif m := re.fullmatch(r"set weight servers/(s\d+) (\d+)", command):
            self.servers[m[1]]["weight"] = int(m[2])
        elif m := re.fullmatch(r"set server servers/(s\d+) health down", command):
            assert self.servers[m[1]]["admin"] == "drain" and self.servers[m[1]]["checked"], command
        else:
            raise AssertionError(f"unexpected command {command}")

    def state(self) -> list[ServerState]:
        admin = {"ready": READY, "drain": DRAIN, "maint": MAINT}
        return [server(int(name[1:]), s["address"], s["port"], admin[s["admin"]], s["weight"], checked=s["checked"])
                for name, s in self.servers.items()]


@given(st.lists(slot_states, min_size=1, max_size=8),
       st.dictionaries(st.integers(1, 8), desired_entries, max_size=8))
def test_applying_the_plan_reaches_the_desired_servers(current, wanted) -> None:
    current = [dataclasses.replace(s, name=f"s{slot}", id=slot) for slot, s in enumerate(current, start=1)]
    desired = [entry(slot, a, p, w, st_) for slot, (a, p, w, st_) in wanted.items() if slot <= len(current)]
    commands = runtime.plan(current, desired)
    model = Simulated(current)
    for command in commands:
        model.run(command)
    after = {s.name: s for s in model.state()}
    for e in desired:
        s = after[e.server]
        assert (s.address, s.port, s.weight) == (e.address, e.port, e.weight)
        assert s.admin == {"ready": "ready", "draining": "drain", "down": "maint"}[e.state]
    for name, s in after.items():
        if name not in {e.server for e in desired}:
            assert s.admin == "maint"
    assert runtime.plan(model.state(), desired) == []
    # capacity first: every command for a slot that ends up ready precedes the others
    ready_slots = {e.server for e in desired if e.state == "ready"}
    kinds = [command.split()[2].split("/")[1] in ready_slots for command in commands]
    assert kinds == sorted(kinds, reverse=True)


# -- the state file ---------------------------------------------------------------------------

def test_state_file_keeps_only_slots_whose_backend_stays() -> None:
    desired = [entry(1, "127.0.20.11", 8000), entry(3, "127.0.20.99", 8000)]
    text = runtime.state_file(SHOW_SERVERS_STATE, desired)
    lines = text.splitlines()
    assert lines[0] == "1" and lines[1].startswith("# be_id")
    rows = [line.split()[3] for line in lines[2:]]
    assert rows == ["s1"]  # s2 is empty now, s3 got another backend


def test_state_file_of_nothing_is_still_valid() -> None:
    assert runtime.state_file("", []) == "1\n"


def test_one_command_per_call() -> None:
    with pytest.raises(ValueError):
        runtime.command("/nonexistent", "show info; show stat")
    with pytest.raises(RuntimeApiError):
        runtime.command("/nonexistent/admin.sock", "show info", timeout=0.5)
