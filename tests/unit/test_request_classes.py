"""Request priority classes: the haproxy.cfg lines, the refused-classes file, the agent's plan."""

from __future__ import annotations

import hashlib
import json

import pytest

from hakeeper.agents import haproxy as agent
from hakeeper.agents import haproxy_request_classes as classes
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.agents.haproxy import ConfigMapView, Desired, Observed
from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.configmaps.haproxy import ConfigError
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.api.request_classes import RequestClass, RequestClassMatch
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config

BACKENDS = [Backend("a", "10.0.0.1", 80)]
CLASSES = [
    {"name": "gold", "priority": 100,
     "match": {"headers": [{"name": "X-Tier", "values": ["gold", "vip"]}], "pathPrefixes": ["/api"]}},
    {"name": "batch", "priority": -50, "match": {"methods": ["POST", "PUT"], "sourceCIDRs": ["10.1.2.3/8", "fd00::/8"]}},
    {"name": "std"},
]


def pool(**fields) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({"backends": {"service": "web", "port": 80}, **fields})


WITH_CLASSES = pool(requestClasses=CLASSES, defaultRequestClass="std")


def frontend(rendered: config.Rendered) -> list[str]:
    cfg = rendered.files[configmap.CONFIG_FILE]
    return [line.strip() for line in cfg.split("frontend clients\n")[1].split("\n\n")[0].splitlines()]


def test_classes_render_first_match_wins_then_the_default_priorities_and_the_refusal() -> None:
    lines = frontend(config.render("web", WITH_CLASSES, BACKENDS, run_dir="/run/x"))
    unset = "!{ var(txn.hk_class) -m found }"
    assert lines[lines.index("option forwardfor") + 1:-1] == [
        "# request classes: first match wins, then std",
        f"http-request set-var(txn.hk_class) str(gold) if {unset} {{ req.hdr(X-Tier) -m str gold vip }} "
        "{ path_beg /api }",
        # the network, not the address as written; IPv6 as Python's ipaddress spells it
        f"http-request set-var(txn.hk_class) str(batch) if {unset} {{ method POST PUT }} {{ src 10.0.0.0/8 fd00::/8 }}",
        f"http-request set-var(txn.hk_class) str(std) if {unset}",
        # HAProxy serves the lowest class first: minus the priority
        "http-request set-priority-class int(-100) if { var(txn.hk_class) -m str gold }",
        "http-request set-priority-class int(50) if { var(txn.hk_class) -m str batch }",
        "http-request return status 503 hdr Retry-After 10 "
        "if { var(txn.hk_class) -m str -f /run/x/refused-classes.acl }",
    ]


def test_the_refusal_status_and_retry_after_rounded_up_to_seconds() -> None:
    spec = pool(requestClasses=CLASSES, defaultRequestClass="std", requestRefusal={"status": 429, "retryAfter": "1500ms"})
    assert frontend(config.render("web", spec, BACKENDS))[-2].startswith("http-request return status 429 hdr Retry-After 2 ")


def test_a_pool_without_classes_renders_and_hashes_as_before() -> None:
    rendered = config.render("web", pool(), BACKENDS)
    assert configmap.REFUSED_FILE not in rendered.files
    assert "txn.hk_class" not in rendered.files[configmap.CONFIG_FILE]
    # the hash of the two files alone, as it was before request classes: no balancer re-applies
    before = hashlib.sha256(json.dumps({k: rendered.files[k] for k in (configmap.CONFIG_FILE, configmap.SERVERS_FILE)},
                                       sort_keys=True).encode()).hexdigest()[:16]
    assert rendered.config_hash == before


def test_refusing_a_class_changes_the_config_hash_not_the_structure() -> None:
    open_ = config.render("web", WITH_CLASSES, BACKENDS)
    refusing = config.render("web", WITH_CLASSES, BACKENDS, refused=["batch", "not-defined"])
    assert open_.files[configmap.REFUSED_FILE] == "[]\n"
    assert refusing.files[configmap.REFUSED_FILE] == '["batch"]\n'  # a name the pool lacks refuses nothing
    assert refusing.structure_hash == open_.structure_hash  # no reload
    assert refusing.config_hash != open_.config_hash  # the balancers report applying it


def test_the_renderer_refuses_what_cel_refuses_and_characters_haproxy_cfg_cannot_carry() -> None:
    def refused(spec: LoadBalancerPoolSpec, fragment: str) -> None:
        with pytest.raises(ConfigError, match=fragment):
            config.render("web", spec, BACKENDS)

    refused(pool(mode="tcp", requestClasses=CLASSES, defaultRequestClass="std"), "need mode http")
    refused(WITH_CLASSES.model_copy(update={"default_request_class": "nope"}), "must name one of")
    # model_construct skips the patterns, as a value that slipped past the API server would
    evil = RequestClass.model_construct(name="evil", priority=0, match=RequestClassMatch.model_construct(
        headers=[], path_prefixes=["/a } || { always_true"], methods=[], source_cidrs=[]))
    refused(WITH_CLASSES.model_copy(update={"request_classes": [evil, *WITH_CLASSES.request_classes]}),
            "path prefix .* has characters")
    bad_cidr = RequestClass.model_construct(name="net", priority=0, match=RequestClassMatch.model_construct(
        headers=[], path_prefixes=[], methods=[], source_cidrs=["fd00::zz/8"]))
    refused(WITH_CLASSES.model_copy(update={"request_classes": [bad_cidr, *WITH_CLASSES.request_classes]}),
            "not an IP address or network")
    no_match = RequestClass.model_construct(name="x", priority=0, match=None)
    refused(WITH_CLASSES.model_copy(update={"request_classes": [no_match, *WITH_CLASSES.request_classes]}),
            "needs a match")


def test_refused_file_parsing_and_the_acl_path() -> None:
    assert configmap.parse_refused('["low", "batch", "low"]') == ("batch", "low")
    assert configmap.parse_refused(None) == ()
    for bad in ('{"low": 1}', '["Low"]', '["a b"]', "not json"):
        with pytest.raises(ConfigError):
            configmap.parse_refused(bad)
    rendered = config.render("web", WITH_CLASSES, BACKENDS, run_dir="/var/run/hakeeper")
    assert configmap.refused_acl_path(rendered.files[configmap.CONFIG_FILE]) == "/var/run/hakeeper/refused-classes.acl"
    assert configmap.refused_acl_path(config.render("web", pool(), BACKENDS).files[configmap.CONFIG_FILE]) is None


# -- the agent ------------------------------------------------------------------------------

ACL = "/run/x/refused-classes.acl"
WANT = classes.Refusals(path=ACL, classes=("batch", "low"))


@pytest.mark.parametrize(("running", "commands"), [
    ([], [f"add acl {ACL} batch", f"add acl {ACL} low"]),
    (["batch", "low"], []),
    (["low", "gold"], [f"add acl {ACL} batch", f"del acl {ACL} gold"]),  # removals last
    (["low", "low"], [f"del acl {ACL} low", f"add acl {ACL} batch", f"add acl {ACL} low"]),  # one copy
    (["gold", "gold"], [f"add acl {ACL} batch", f"add acl {ACL} low", f"del acl {ACL} gold"]),
])
def test_acl_plan(running, commands) -> None:
    assert classes.plan(running, WANT) == commands


def test_acl_plan_for_a_pool_without_classes_is_nothing() -> None:
    assert classes.plan(["low"], classes.Refusals()) == []


def test_show_acl_parsing() -> None:
    assert classes.parse_show_acl("0x55c5593d7ca0 std\n0x7f13dc04ae60 low\n\n") == ["std", "low"]
    with pytest.raises(runtime.RuntimeApiError):
        classes.parse_show_acl("Unknown ACL identifier. Please use #<id> or <file>.\n")


def desired(refused: list[str]) -> Desired:
    rendered = config.render("web", WITH_CLASSES, BACKENDS, run_dir="/run/x", refused=refused)
    return Desired.from_configmap(ConfigMapView(rendered.files, {}))


def test_the_agent_writes_the_acl_file_before_haproxy_runs() -> None:
    d = desired(["std"])
    decision = agent.decide(d, Observed(disk_text=None, running=False))
    assert decision.acl_write == "std\n" and decision.write == d.disk_text
    assert agent.decide(d, Observed(disk_text=d.disk_text, running=False, acl_disk="std\n")).acl_write is None


def test_the_agent_changes_the_running_acl_without_reload_and_then_reports() -> None:
    old, new = desired([]), desired(["batch"])
    observed = Observed(disk_text=old.disk_text, running=True, structure=old.structure_hash,
                        servers=_servers(old), reported=old.config_hash, acl_disk="", acl_running=())
    decision = agent.decide(new, observed)
    assert decision.acl_write == "batch\n" and not decision.reload and decision.write is None
    assert decision.commands == (f"add acl {ACL} batch",) and decision.report == new.config_hash
    # another structure runs: the ACL is not read (acl_running None) and no ACL command is sent
    other = Observed(**{**observed.__dict__, "structure": "other", "acl_running": None, "master": True})
    assert agent.decide(new, other).reload and not agent.decide(new, other).commands


def _servers(d: Desired) -> tuple[runtime.ServerState, ...]:
    by_slot = {e.slot: e for e in d.servers}
    return tuple(runtime.ServerState("servers", f"s{slot}", slot, by_slot[slot].address if slot in by_slot else "0.0.0.0",
                                     by_slot[slot].port if slot in by_slot else 0, 2, 0 if slot in by_slot else 5,
                                     1, 1, 3) for slot in range(1, configmap.slot_count(d.cfg) + 1))
