"""Latency-aware weights (spec.weighting mode Latency): the agent's pure steps, the file the operator
writes for it, and the status built from the agents' reports."""

from __future__ import annotations

import json

import pytest

from hakeeper.agents import haproxy as agent
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents import haproxy_weighting as w
from hakeeper.agents.haproxy import ConfigMapView, Desired, Observed
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.configmaps.haproxy import ConfigError, SlotEntry
from hakeeper.api.configmaps.weighting import WeightingParams, parse_weighting
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config
from hakeeper.loadbalancerpool.status import BalancerPod, pool_status

PARAMS = WeightingParams(interval=5.0, half_life=5.0, floor=0.1, max_step=0.25)
BACKENDS = [Backend("a", "10.0.0.1", 80), Backend("b", "10.0.0.2", 80), Backend("c", "10.0.0.3", 80, 3)]

# `show stat servers 4 -1` of HAProxy 2.6.12 (Debian 12), two servers: the header is cut to the
# columns up to ttime and one more, as 2.6 appends columns after them
STAT_26 = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
    "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,"
    "rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,"
    "hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,"
    "last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,\n"
    "servers,s1,0,0,0,1,,2,162,146,,0,,0,0,0,0,no check,1,1,0,,,7,,,1,3,1,,2,,2,0,,1,,,,0,2,0,0,0,0,,,,2,0,0,"
    ",,,,3,,,0,0,0,1,,\n"
    "servers,s2,0,0,0,1,,8,162,434,,0,,2,0,6,0,no check,1,1,0,,,7,,,1,3,2,,2,,2,1,,2,,,,0,0,0,0,0,0,,,,0,0,0,"
    ",,,,0,,,0,0,51,53,,\n"
    "servers,BACKEND,0,0,0,1,,10,324,580,0,0,,2,0,6,0,UP,2,2,0,,0,7,0,,1,3,0,,4,,1,1,,3,,,,0,2,0,0,0,0,,,,,,,"
    ",,,,3,,,0,0,0,1,,\n"
)


def spec(**fields) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({"backends": {"service": "web", "port": 80}, **fields})


LATENCY = {"weighting": {"mode": "Latency"}}


# -- show stat -------------------------------------------------------------------------------

def test_show_stat_of_haproxy_26_gives_each_servers_sessions_and_times() -> None:
    samples = w.parse_stat(STAT_26)
    assert set(samples) == {"s1", "s2"}  # the BACKEND row is the backend's, not a server's
    assert samples["s2"] == w.Sample("s2", sessions=8, rtime=51, ttime=53)
    assert samples["s1"].latency("rtime") == 0 and samples["s1"].latency("ttime") == 1


def test_an_answer_that_is_not_show_stat_is_refused() -> None:
    with pytest.raises(w.StatError):
        w.parse_stat("Unknown command. Please enter one of the following commands only :\n")


# -- one interval ----------------------------------------------------------------------------

def test_a_slower_server_gets_less_within_the_step_and_the_floor() -> None:
    samples = {"a": w.Sample("a", 100, 1, 1), "b": w.Sample("b", 100, 51, 51)}
    state = w.advance({}, samples, PARAMS, ["a", "b"])
    assert state["a"].factor == 1.0
    # target 1/51 is below the floor; damped half way there, then limited to -25 % per interval
    assert state["b"].factor == pytest.approx(0.75)
    for _ in range(20):
        samples = {n: w.Sample(n, s.sessions + 100, s.rtime, s.ttime) for n, s in samples.items()}
        state = w.advance(state, samples, PARAMS, ["a", "b"])
    assert state["b"].factor == pytest.approx(PARAMS.floor, abs=0.01)  # never below the floor


def test_a_server_without_new_requests_keeps_its_factor_and_a_new_one_starts_at_one() -> None:
    state = {"a": w.ServerWeighting(latency=1.0, factor=1.0, sessions=10),
             "b": w.ServerWeighting(latency=40.0, factor=0.4, sessions=10)}
    # b had no request since: its old average stays, and its factor (no news, no move)
    samples = {"a": w.Sample("a", 20, 1, 1), "b": w.Sample("b", 10, 0, 0)}
    after = w.advance(state, samples, PARAMS, ["a", "b", "c"])
    assert after["b"] == state["b"]
    assert after["c"] == w.ServerWeighting()  # never measured: factor 1
    # forgotten when it stops taking requests (drained, removed)
    assert set(w.advance(after, samples, PARAMS, ["a"])) == {"a"}


def test_zero_milliseconds_is_a_sample_haproxy_counts_whole_milliseconds() -> None:
    state = w.advance({}, {"a": w.Sample("a", 5, 0, 0), "b": w.Sample("b", 5, 30, 30)}, PARAMS, ["a", "b"])
    assert state["a"].latency == 0.0 and state["a"].factor == 1.0 and state["b"].factor < 1.0


def test_the_moving_average_halves_a_samples_weight_every_half_life() -> None:
    params = WeightingParams(interval=5.0, half_life=10.0, floor=0.1, max_step=0.25)
    assert params.alpha == pytest.approx(1 - 0.5 ** 0.5)
    state = w.advance({}, {"a": w.Sample("a", 1, 10, 10)}, params, ["a"])
    state = w.advance(state, {"a": w.Sample("a", 2, 20, 20)}, params, ["a"])
    assert state["a"].latency == pytest.approx(10 + params.alpha * 10)


def test_small_differences_are_noise_and_move_nothing() -> None:
    assert w.next_factor(0.5, 10.0, 20.5, PARAMS) == 0.5  # target 0.488: within the dead band
    assert w.next_factor(0.5, 10.0, 40.0, PARAMS) == pytest.approx(0.375)  # target 0.25: half way, 25 % at most


# -- feedback: latency rising with the share a server gets --------------------------------------

def simulate(bases: dict[str, float], k: float, start: dict[str, float], params: WeightingParams,
             intervals: int = 40) -> dict[str, list[float]]:
    """Each interval every server answers in base + k x its share of the requests (a server
    slows down with its load); the agent reads that and moves the factors. The factors' history."""
    state = {n: w.ServerWeighting(factor=start.get(n, 1.0)) for n in bases}
    sessions = dict.fromkeys(bases, 0)
    history: dict[str, list[float]] = {n: [] for n in bases}
    for _ in range(intervals):
        total = sum(s.factor for s in state.values())
        samples = {}
        for n, base in bases.items():
            share = state[n].factor / total
            sessions[n] += max(1, round(share * 1000))
            latency = round(base + k * share)
            samples[n] = w.Sample(n, sessions[n], latency, latency)
        state = w.advance(state, samples, params, list(bases))
        for n in bases:
            history[n].append(state[n].factor)
    return history


def direction_changes(values: list[float]) -> int:
    steps = [b - a for a, b in zip(values, values[1:]) if abs(b - a) > 1e-9]
    return sum(1 for a, b in zip(steps, steps[1:]) if (a > 0) != (b > 0))


def test_the_damped_rule_converges_without_oscillating() -> None:
    # two equal servers, one starting far down (after a slow spell), strongly load-dependent
    history = simulate({"a": 5, "b": 5}, k=100, start={"a": 0.3}, params=PARAMS)
    for values in history.values():
        assert values[-10:] == [values[-1]] * 10, values  # settled, and stays
        assert direction_changes(values) <= 1, values  # at most one turn, no swinging
    assert abs(history["a"][-1] - history["b"][-1]) < 0.1  # equal servers end up equal
    # one server 50 ms slower: it settles low, the others at full weight
    slow = simulate({"a": 5, "b": 55, "c": 5}, k=30, start={}, params=PARAMS)
    assert slow["b"][-10:] == [slow["b"][-1]] * 10 and slow["b"][-1] < 0.5
    assert slow["a"][-1] == slow["c"][-1] == 1.0
    assert direction_changes(slow["b"]) == 0


def test_negative_control_the_undamped_rule_swings_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above would see oscillation: without damping, step limit and dead band (next =
    target, the latest sample alone) the same two servers trade places every interval."""
    monkeypatch.setattr(w, "GAIN", 1.0)
    monkeypatch.setattr(w, "DEADBAND", 0.0)
    undamped = WeightingParams(interval=5.0, half_life=1e-9, floor=0.1, max_step=1.0)
    history = simulate({"a": 5, "b": 5}, k=100, start={"a": 0.3}, params=undamped)
    assert direction_changes(history["a"][-20:]) >= 15, history["a"]
    assert max(history["a"][-10:]) - min(history["a"][-10:]) > 0.05


# -- effective weights ----------------------------------------------------------------------

def entries(*weights: int) -> list[SlotEntry]:
    return [SlotEntry(i + 1, f"b{i}", f"10.0.0.{i + 1}", 80, weight, "ready") for i, weight in enumerate(weights)]


def test_base_weights_are_scaled_for_resolution_and_keep_their_proportions() -> None:
    assert [e.weight for e in w.effective(entries(1, 1, 3), {})] == [85, 85, 255]  # 256 // 3 = 85
    assert [e.weight for e in w.effective(entries(1, 2), {})] == [100, 200]
    assert [e.weight for e in w.effective(entries(1, 2), {"b1": 0.5})] == [100, 100]
    assert [e.weight for e in w.effective(entries(256, 1), {"b1": 0.1})] == [256, 1]  # never 0 for a base > 0


def test_a_base_of_zero_stays_zero() -> None:
    assert [e.weight for e in w.effective(entries(0, 1), {"b0": 1.0})] == [0, 100]


def test_every_weight_is_within_haproxys_range() -> None:
    for bases in ((1,), (256,), (255, 1), (3, 7, 129)):
        for factor in (0.01, 0.1, 0.5, 1.0):
            weights = [e.weight for e in w.effective(entries(*bases), {f"b{i}": factor for i in range(len(bases))})]
            assert all(1 <= x <= 256 for x in weights), (bases, factor, weights)


def test_the_report_names_backends_bases_weights_factors_and_latencies() -> None:
    state = {"b0": w.ServerWeighting(latency=1.0, factor=1.0), "b1": w.ServerWeighting(latency=51.04, factor=0.4)}
    rows = json.loads(w.report(entries(1, 1), state))
    assert rows == [{"backend": "b0", "base": 1, "weight": 100, "percent": 100, "latencyMs": 1.0},
                    {"backend": "b1", "base": 1, "weight": 40, "percent": 40, "latencyMs": 51.0}]
    # a change of latency alone is no news: the key is the weights
    other = w.report(entries(1, 1), {**state, "b1": w.ServerWeighting(latency=60.0, factor=0.4)})
    assert w.report_key(other) == w.report_key(w.report(entries(1, 1), state))
    # a first measurement is news
    unmeasured = w.report(entries(1, 1), {**state, "b1": w.ServerWeighting(latency=None, factor=0.4)})
    assert w.report_key(unmeasured) != w.report_key(w.report(entries(1, 1), state))


# -- the agent's decide step ----------------------------------------------------------------

def desired(pool_spec: LoadBalancerPoolSpec, backends=BACKENDS) -> Desired:
    rendered = config.render("web", pool_spec, backends)
    return Desired.from_configmap(ConfigMapView(rendered.files))


def running(d: Desired, weights: dict[str, int]) -> tuple[runtime.ServerState, ...]:
    by_slot = {e.slot: e for e in d.servers}
    rows = []
    for slot in range(1, configmap.slot_count(d.cfg) + 1):
        e = by_slot.get(slot)
        weight = weights.get(e.name, e.weight) if e else 1
        rows.append(runtime.ServerState("servers", f"s{slot}", slot, e.address if e else "0.0.0.0", e.port if e else 0,
                                        2, 0 if e else 5, weight, weight, 3))
    return tuple(rows)


def test_with_latency_weighting_plan_sets_the_scaled_weights_times_the_factors() -> None:
    d = desired(spec(**LATENCY))
    assert d.weighting == WeightingParams(interval=5.0, half_life=10.0, floor=0.1, max_step=0.25)
    base = {e.name: e.weight for e in d.servers}
    observed = Observed(disk_text=d.disk_text, running=True, structure=d.structure_hash, servers=running(d, base),
                        reported=d.config_hash, factors={"b": 0.5})
    decision = agent.decide(d, observed)
    slots = {e.name: e.server for e in d.servers}
    assert set(decision.commands) == {f"set weight servers/{slots['a']} 85", f"set weight servers/{slots['b']} 42",
                                      f"set weight servers/{slots['c']} 255"}
    # once applied, nothing more: the two weights (servers.json's and latency's) do not fight
    applied = running(d, {"a": 85, "b": 42, "c": 255})
    assert agent.decide(d, Observed(disk_text=d.disk_text, running=True, structure=d.structure_hash,
                                    servers=applied, reported=d.config_hash, factors={"b": 0.5})).idle


def test_static_weighting_sets_the_base_weights_whatever_factors_were_left() -> None:
    d = desired(spec())
    assert d.weighting is None
    scaled = running(d, {"a": 85, "b": 42, "c": 255})  # left by a Latency pool switched back
    decision = agent.decide(d, Observed(disk_text=d.disk_text, running=True, structure=d.structure_hash,
                                        servers=scaled, reported=d.config_hash, factors={"b": 0.5}))
    slots = {e.name: e.server for e in d.servers}
    assert set(decision.commands) == {f"set weight servers/{slots['a']} 1", f"set weight servers/{slots['b']} 1",
                                      f"set weight servers/{slots['c']} 3"}


def test_the_weights_are_reported_when_they_change_and_otherwise_once_a_minute() -> None:
    d = desired(spec(**LATENCY))
    applied = running(d, {"a": 100, "b": 100, "c": 255})
    report = w.report(d.servers, {"b": w.ServerWeighting(latency=50.0, factor=0.5)})
    base = {"disk_text": d.disk_text, "running": True, "structure": d.structure_hash, "reported": d.config_hash,
            "servers": applied, "weights_report": report}
    assert agent.decide(d, Observed(**base, weights_reported=None)).weights == report
    assert agent.decide(d, Observed(**base, weights_reported=report, weights_reported_age=10)).weights is None
    assert agent.decide(d, Observed(**base, weights_reported=report, weights_reported_age=61)).weights == report


class StatSocket:
    def __init__(self) -> None:
        self.reads = 0
        self.rtimes = {"s1": 1, "s2": 51}

    def __call__(self) -> str:
        self.reads += 1
        header = "# pxname,svname,stot,rtime,ttime\n"
        return header + "".join(f"servers,{s},{self.reads * 10},{r},{r}\n" for s, r in self.rtimes.items())


def test_the_tracker_reads_the_statistics_once_per_interval() -> None:
    tracker = w.Tracker()
    two = entries(1, 1)
    stat = StatSocket()
    assert tracker.due_in(0.0) is None
    first = tracker.observe(PARAMS, two, stat, now=100.0)
    assert stat.reads == 1 and first["b1"] == pytest.approx(0.75)
    assert tracker.observe(PARAMS, two, stat, now=104.9) == first and stat.reads == 1
    assert tracker.due_in(104.0) == pytest.approx(1.0)
    assert tracker.observe(PARAMS, two, stat, now=105.0)["b1"] < first["b1"] and stat.reads == 2
    assert tracker.observe(None, two, stat, now=106.0) == {} and tracker.due_in(106.0) is None  # Static: forgotten


# -- the operator's side: weighting.json, CEL mirrored, status ----------------------------------

def test_weighting_json_exists_for_latency_only_and_a_static_pools_hash_is_unchanged() -> None:
    static = config.render("web", spec(), BACKENDS)
    assert configmap.WEIGHTING_FILE not in static.files
    assert static.config_hash == configmap._digest(json.dumps(
        {k: static.files[k] for k in (configmap.CONFIG_FILE, configmap.SERVERS_FILE)}, sort_keys=True))
    latency = config.render("web", spec(weighting={"mode": "Latency", "interval": "2s", "floor": 5,
                                                   "maxStep": 50, "halfLife": "1m"}), BACKENDS)
    assert parse_weighting(latency.files[configmap.WEIGHTING_FILE]) == WeightingParams(
        interval=2.0, half_life=60.0, floor=0.05, max_step=0.5, measure="rtime")
    # no reload: the structure is the same; the config hash is not (balancers report it applied)
    assert latency.structure_hash == static.structure_hash and latency.config_hash != static.config_hash
    tcp = config.render("web", spec(mode="tcp", **LATENCY), BACKENDS)
    assert parse_weighting(tcp.files[configmap.WEIGHTING_FILE]).measure == "ttime"  # rtime is 0 in mode tcp


@pytest.mark.parametrize("fields,words", [
    ({"algorithm": "static-rr"}, "not algorithm static-rr"),
    ({"algorithm": "source"}, "map-based hash"),
    ({"algorithm": "uri", "hashType": "map-based"}, "map-based hash"),
    ({"mode": "redirect"}, "does not apply to mode redirect"),
])
def test_the_renderer_refuses_what_cel_refuses(fields, words) -> None:
    with pytest.raises(ConfigError, match=words):
        config.render("web", spec(**fields, **LATENCY), BACKENDS)
    config.render("web", spec(**fields), BACKENDS)  # the same pool with Static weights is fine


def test_consistent_hashing_and_source_affinity_take_latency_weights() -> None:
    config.render("web", spec(algorithm="source", hashType="consistent", **LATENCY), BACKENDS)
    config.render("web", spec(sessionAffinity={"type": "SourceIP"}, **LATENCY), BACKENDS)


def test_weighting_json_the_operator_did_not_write_is_refused() -> None:
    assert parse_weighting(None) is None
    for text in ("{", "[]", '{"interval": 5}',
                 json.dumps({"interval": 5, "half_life": 5, "floor": 0, "max_step": 0.2, "measure": "rtime"})):
        with pytest.raises(ConfigError):
            parse_weighting(text)


REPORT = json.dumps([{"backend": "web-0", "base": 1, "weight": 100, "percent": 100, "latencyMs": 1.0},
                     {"backend": "web-1", "base": 1, "weight": 10, "percent": 10, "latencyMs": 51.0}])


def status(latency: bool | None, balancers: list[BalancerPod]) -> dict:
    return pool_status(None, 1, "roundrobin", [Backend("web-0", "10.0.0.1", 80)], "h", balancers, now="t",
                       latency=latency)


def test_the_status_shows_the_first_ready_balancers_weights() -> None:
    got = status(True, [BalancerPod("p2", True, "h", effective_weights=REPORT),
                        BalancerPod("p1", False, "h", effective_weights="[]"),
                        BalancerPod("p0", True, "h", effective_weights="not json")])
    assert got["effectiveWeights"] == json.loads(REPORT)


def test_a_static_pool_clears_the_weights_and_an_lvs_pool_leaves_them_alone() -> None:
    assert status(False, [BalancerPod("p1", True, "h", effective_weights=REPORT)])["effectiveWeights"] is None
    assert "effectiveWeights" not in status(None, [BalancerPod("p1", True, "h", effective_weights=REPORT)])
    assert status(True, [BalancerPod("p1", True, "h")])["effectiveWeights"] is None  # not reported yet
