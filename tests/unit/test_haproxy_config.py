"""The rendered HAProxy configuration: accepted by the real haproxy, stable where it must be."""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hakeeper.api.configmaps import haproxy as configmap
from hakeeper.api.configmaps.haproxy import ConfigError
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
BACKENDS = [
    Backend("web-0", "10.0.0.10", 8080, 3),
    Backend("web-1", "10.0.0.11", 8080, 1, "draining"),
    Backend("web-2", "10.0.0.12", 8080, 0, "down"),
]


def make_spec(**fields: Any) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate(
        {"backends": {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}, **fields})


def haproxy_check(text: str, directory: pathlib.Path) -> str:
    """`haproxy -c` on the text; fails on any alert or warning, not only on errors."""
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is not installed (Debian package haproxy)")
    path = directory / "haproxy.cfg"
    path.write_text(text)
    done = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "POD_IP": "127.0.0.1"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "[WARNING]" not in output and "[ALERT]" not in output, output
    return output


@pytest.fixture
def run_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    # the state file exists in a running pod (the agent writes it); an absent one is a warning
    (tmp_path / config.STATE_FILE).write_text("1\n")
    return tmp_path


def render(pool_spec: LoadBalancerPoolSpec, run_dir: pathlib.Path, backends=BACKENDS, previous=None):
    return config.render("web", pool_spec, backends, previous, run_dir=str(run_dir))


def disk_text(rendered: config.Rendered) -> str:
    return configmap.on_disk(rendered.files[configmap.CONFIG_FILE],
                          configmap.parse_servers(rendered.files[configmap.SERVERS_FILE]))


# -- every combination passes haproxy -c ---------------------------------------------------

ALGORITHMS = [("roundrobin", None), ("static-rr", None), ("leastconn", None), ("random", None)] + [
    (algorithm, hash_type) for algorithm in ("source", "uri", "hdr") for hash_type in (None, "map-based", "consistent")]
HEALTH = {
    "tcp": {"type": "tcp"},
    "http": {"type": "http", "path": "/healthz", "expectStatus": 204, "interval": "500ms", "timeout": "250ms"},
    "mysql": {"type": "mysql", "mysqlUser": "haproxy_check", "rise": 1, "fall": 5},
    "none": {"type": "none"},
}
AFFINITY = {
    "None": {"type": "None"},
    "SourceIP": {"type": "SourceIP"},
    "Cookie": {"type": "Cookie", "cookie": {"name": "HK", "mode": "insert", "maxIdle": "30m"}},
}


def _combinations():
    for (algorithm, hash_type), mode, health, affinity in itertools.product(
            ALGORITHMS, ("http", "tcp", "redirect"), HEALTH, AFFINITY):
        if mode == "tcp" and algorithm in ("uri", "hdr"):
            continue  # refused by the schema
        if affinity == "Cookie" and mode != "http":
            continue  # refused by the schema
        yield pytest.param(algorithm, hash_type, mode, health, affinity,
                           id=f"{algorithm}-{hash_type or 'default'}-{mode}-{health}-{affinity}")


@pytest.mark.parametrize("algorithm,hash_type,mode,health,affinity", list(_combinations()))
def test_every_combination_is_valid_haproxy(run_dir, algorithm, hash_type, mode, health, affinity) -> None:
    fields: dict[str, Any] = {"algorithm": algorithm, "mode": mode, "healthCheck": HEALTH[health],
                              "sessionAffinity": AFFINITY[affinity], "retryOn": ["conn-failure", "503"],
                              "server": {"maxconn": 200, "slowstart": "5s"}}
    if hash_type:
        fields["hashType"] = hash_type
    if algorithm == "hdr":
        fields["hashHeader"] = "X-Session"
    rendered = render(make_spec(**fields), run_dir)
    haproxy_check(disk_text(rendered), run_dir)


def test_the_structure_alone_is_valid_haproxy(run_dir) -> None:
    haproxy_check(render(make_spec(), run_dir).files[configmap.CONFIG_FILE], run_dir)


def test_tunnel_and_hard_stop_after_reach_the_file_and_haproxy_takes_them(run_dir) -> None:
    """Issue 14 4(d): long-lived connections. Unset, no `timeout tunnel` (client and server
    apply) and the old worker keeps its connections 60 s after a reload."""
    default = render(make_spec(), run_dir).files[configmap.CONFIG_FILE]
    assert "timeout tunnel" not in default and "    hard-stop-after 60000ms" in default.splitlines()
    text = render(make_spec(mode="tcp", timeouts={"tunnel": "1h", "hardStopAfter": "15m"}), run_dir).files[
        configmap.CONFIG_FILE]
    assert "    timeout tunnel 3600000ms" in text.splitlines() and "    hard-stop-after 900000ms" in text.splitlines()
    haproxy_check(text, run_dir)


# -- property: any valid spec renders to a configuration haproxy accepts ----------------------

durations = st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 90), st.sampled_from(["ms", "s", "m"]))
wire_specs = st.fixed_dictionaries(
    {"backends": st.just({"service": "web", "port": 8080})},
    optional={
        "mode": st.sampled_from(["http", "tcp", "redirect"]),
        "algorithm": st.sampled_from(["roundrobin", "static-rr", "leastconn", "random", "source", "uri", "hdr"]),
        "hashHeader": st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z"),
        "hashType": st.sampled_from(["map-based", "consistent"]),
        "healthCheck": st.fixed_dictionaries({"type": st.sampled_from(["tcp", "http", "mysql", "none"])}, optional={
            "path": st.text(min_size=0, max_size=40).map(lambda s: "/" + s),
            "expectStatus": st.integers(100, 599),
            "mysqlUser": st.from_regex(r"\A[a-z_]{1,16}\Z"),
            "interval": st.just("3s"), "timeout": durations.filter(lambda d: not d.endswith("m")).map(
                lambda d: d if d.endswith("ms") else "1s"),
            "rise": st.integers(1, 100), "fall": st.integers(1, 100)}),
        "sessionAffinity": st.one_of(
            st.just({"type": "None"}), st.just({"type": "SourceIP"}),
            st.fixed_dictionaries({"type": st.just("Cookie")}, optional={"cookie": st.fixed_dictionaries(
                {}, optional={"name": st.from_regex(r"\A[A-Za-z0-9_.-]{1,20}\Z"),
                              "mode": st.sampled_from(["insert", "prefix"]), "maxIdle": durations})})),
        "timeouts": st.fixed_dictionaries({}, optional={k: durations for k in (
            "connect", "client", "server", "queue", "tunnel", "hardStopAfter")}),
        "retries": st.integers(0, 100),
        "redispatch": st.booleans(),
        "retryOn": st.lists(st.sampled_from(["conn-failure", "empty-response", "503", "504", "response-timeout"]),
                            unique=True, max_size=4),
        "server": st.fixed_dictionaries({}, optional={"maxconn": st.integers(1, 1_000_000), "slowstart": durations}),
    })
backend_lists = st.lists(
    st.builds(Backend, name=st.from_regex(r"\A[a-z0-9-]{1,30}\Z"),
              address=st.ip_addresses(v=4).map(str), port=st.integers(1, 65535),
              weight=st.integers(0, 256), state=st.sampled_from(["ready", "draining", "down"])),
    max_size=20, unique_by=lambda b: b.name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HypothesisHealthCheck.function_scoped_fixture])
@given(wire=wire_specs, backends=backend_lists)
def test_any_valid_spec_renders_valid_haproxy(run_dir, wire, backends) -> None:
    try:
        pool_spec = LoadBalancerPoolSpec.model_validate(wire)
        rendered = render(pool_spec, run_dir, backends)
    except (ValueError, ConfigError):
        assume(False)  # refused by the schema or its CEL rules: not a valid spec
        return
    haproxy_check(disk_text(rendered), run_dir)


# -- what belongs to the structure, and what does not -------------------------------------

def test_backends_change_servers_json_only_until_the_slots_run_out(run_dir) -> None:
    pool_spec = make_spec()
    previous = None
    hashes = set()
    for count in range(0, 9):
        backends = [Backend(f"web-{i}", f"10.0.1.{i + 1}", 8080) for i in range(count)]
        rendered = render(pool_spec, run_dir, backends, previous)
        hashes.add(rendered.structure_hash)
        previous = rendered.slots
    assert len(hashes) == 1
    nine = render(pool_spec, run_dir, [Backend(f"web-{i}", f"10.0.1.{i + 1}", 8080) for i in range(9)], previous)
    assert nine.structure_hash not in hashes
    assert configmap.slot_count(nine.files[configmap.CONFIG_FILE]) == 16


def test_state_and_weight_are_runtime_changes_under_a_dynamic_algorithm(run_dir) -> None:
    base = render(make_spec(algorithm="leastconn"), run_dir)
    changed = render(make_spec(algorithm="leastconn"), run_dir,
                     [Backend("web-0", "10.0.0.10", 8080, 7, "draining"), *BACKENDS[1:]])
    assert changed.structure_hash == base.structure_hash
    assert changed.config_hash != base.config_hash


@pytest.mark.parametrize("fields", [{"algorithm": "static-rr"}, {"algorithm": "source"},
                                    {"algorithm": "uri", "hashType": "map-based"}])
def test_weights_are_structure_under_a_static_algorithm(run_dir, fields) -> None:
    base = render(make_spec(**fields), run_dir)
    reweighted = render(make_spec(**fields), run_dir, [Backend("web-0", "10.0.0.10", 8080, 7), *BACKENDS[1:]])
    assert reweighted.structure_hash != base.structure_hash
    assert "weight 7" in reweighted.files[configmap.CONFIG_FILE]
    drained = render(make_spec(**fields), run_dir, [Backend("web-0", "10.0.0.10", 8080, 3, "draining"), *BACKENDS[1:]])
    assert drained.structure_hash == base.structure_hash


def test_redirect_mode_puts_addresses_in_the_structure(run_dir) -> None:
    base = render(make_spec(mode="redirect"), run_dir)
    cfg = base.files[configmap.CONFIG_FILE]
    assert "redir http://10.0.0.10:8080" in cfg
    moved = render(make_spec(mode="redirect"), run_dir, [Backend("web-0", "10.0.0.99", 8080, 3), *BACKENDS[1:]])
    assert moved.structure_hash != base.structure_hash
    drained = render(make_spec(mode="redirect"), run_dir,
                     [Backend("web-0", "10.0.0.10", 8080, 3, "draining"), *BACKENDS[1:]])
    assert drained.structure_hash == base.structure_hash


def test_render_is_deterministic_and_ignores_backend_order(run_dir) -> None:
    one = render(make_spec(), run_dir, BACKENDS)
    two = render(make_spec(), run_dir, list(reversed(BACKENDS)))
    assert one == two
    assert one.slots == {"web-0": 1, "web-1": 2, "web-2": 3}


def test_previous_slots_are_kept(run_dir) -> None:
    first = render(make_spec(), run_dir, BACKENDS)
    later = render(make_spec(), run_dir, [BACKENDS[2], Backend("web-3", "10.0.0.13", 8080)], first.slots)
    assert later.slots == {"web-2": 3, "web-3": 1}
    assert config.previous_slots(later.files) == later.slots
    assert config.previous_slots(later.files).capacity == 8
    assert config.previous_slots({}) == {}


# -- the parts of the configuration, as HAProxy keywords ----------------------------------

def backend_section(rendered: config.Rendered) -> list[str]:
    cfg = rendered.files[configmap.CONFIG_FILE]
    section = cfg.split(f"\nbackend {configmap.BACKEND}\n")[1].split("\n\n")[0]
    return [line.strip() for line in section.splitlines()]


def test_source_ip_affinity(run_dir) -> None:
    implicit = backend_section(render(make_spec(sessionAffinity={"type": "SourceIP"}), run_dir))
    assert "balance source" in implicit and "hash-type consistent" in implicit
    assert not any(line.startswith("stick") for line in implicit)
    with_algorithm = backend_section(render(make_spec(algorithm="leastconn", sessionAffinity={"type": "SourceIP"}),
                                            run_dir))
    assert "balance leastconn" in with_algorithm and "stick on src" in with_algorithm


def test_a_stick_table_is_shared_by_the_balancer_replicas_through_peers(run_dir) -> None:
    """Issue 14, field fault c: a SourceIP stick table syncs between the replicas and survives reloads."""
    sticky = make_spec(algorithm="leastconn", sessionAffinity={"type": "SourceIP"})
    peers = [("web-7d9-b", "10.244.0.12"), ("web-7d9-a", "fd00::7"), ("web-7d9-b", "10.244.0.12")]
    rendered = render_with_peers(sticky, run_dir, peers)
    cfg = rendered.files[configmap.CONFIG_FILE]
    section = cfg.split("\npeers hakeeper\n")[1].split("\n\n")[0].splitlines()
    assert section == ["    peer web-7d9-a [fd00::7]:10000", "    peer web-7d9-b 10.244.0.12:10000"]
    assert "stick-table type ipv6 size 1m expire 30m peers hakeeper" in backend_section(rendered)
    # no stick table, no peers: the replicas' set does not reach the structure (no reload when it changes)
    for stateless in (make_spec(sessionAffinity={"type": "SourceIP"}), make_spec(algorithm="leastconn")):
        assert render_with_peers(stateless, run_dir, peers).structure_hash == render(stateless, run_dir).structure_hash
    # before the pods have addresses: a table of its own
    assert "peers" not in render(sticky, run_dir).files[configmap.CONFIG_FILE].split("backend")[0]
    with pytest.raises(ConfigError, match="peer name"):
        render_with_peers(sticky, run_dir, [("a b", "10.0.0.1")])
    with pytest.raises(ConfigError, match="not an IP address"):
        render_with_peers(sticky, run_dir, [("a", "10.0.0.1:80")])


def render_with_peers(pool_spec: LoadBalancerPoolSpec, run_dir: pathlib.Path, peers) -> config.Rendered:
    return config.render("web", pool_spec, BACKENDS, run_dir=str(run_dir), peers=peers)


def test_cookie_affinity(run_dir) -> None:
    insert = backend_section(render(make_spec(sessionAffinity={"type": "Cookie"}), run_dir))
    assert "cookie SERVERID insert indirect nocache" in insert
    assert "server s1 0.0.0.0:0 disabled weight 1 cookie s1" in insert
    prefix = backend_section(render(make_spec(sessionAffinity={
        "type": "Cookie", "cookie": {"name": "JSESSIONID", "mode": "prefix", "maxIdle": "1h"}}), run_dir))
    assert "cookie JSESSIONID prefix" in prefix  # maxidle exists for inserted cookies only
    assert not any("maxidle" in line for line in prefix if not line.startswith("#"))


def test_health_checks_and_server_options(run_dir) -> None:
    lines = backend_section(render(make_spec(
        healthCheck={"type": "http", "path": "/ready", "expectStatus": 204, "interval": "1500ms",
                     "timeout": "1s", "rise": 4, "fall": 5},
        server={"maxconn": 50, "slowstart": "30s"}, retries=5, redispatch=False, retryOn=["503"]), run_dir))
    assert "option httpchk" in lines
    assert "http-check send meth GET uri /ready" in lines
    assert "http-check expect status 204" in lines
    assert "timeout check 1000ms" in lines
    assert "default-server check inter 1500ms fall 5 rise 4 maxconn 50 slowstart 30000ms" in lines
    assert "retries 5" in lines and "no option redispatch" in lines and "retry-on 503" in lines
    mysql = backend_section(render(make_spec(mode="tcp", healthCheck={"type": "mysql", "mysqlUser": "hk"}), run_dir))
    assert "option mysql-check user hk post-41" in mysql
    none = backend_section(render(make_spec(healthCheck={"type": "none"}), run_dir))
    assert not any("check" in line for line in none)


def test_frontends_bind_the_pod_ip_and_serve_metrics(run_dir) -> None:
    cfg = render(make_spec(balancer={"metricsPort": 9101}), run_dir).files[configmap.CONFIG_FILE]
    assert 'bind "${POD_IP}:8080"' in cfg
    assert 'bind "${POD_IP}:9101"' in cfg
    assert "http-request use-service prometheus-exporter if { path /metrics }" in cfg
    assert f"stats socket {run_dir}/admin.sock mode 600 level admin expose-fd listeners" in cfg
    local = config.render("web", make_spec(), [], listen_address="127.0.0.5", run_dir=str(run_dir))
    assert 'bind "127.0.0.5:8080"' in local.files[configmap.CONFIG_FILE]


# -- nothing a user writes can break a line -----------------------------------------------

def test_a_health_check_path_is_encoded_not_trusted(run_dir) -> None:
    # the schema refuses such a path (and pydantic with it); model_copy does not validate, so
    # this is the renderer's own defence
    spec = make_spec(healthCheck={"type": "http"})
    spec = spec.model_copy(update={"health_check": spec.health_check.model_copy(update={"path": "/a b#c\nd\"$x"})})
    rendered = render(spec, run_dir)
    lines = backend_section(rendered)
    assert "http-check send meth GET uri /a%20b%23c%0Ad%22%24x" in lines
    haproxy_check(disk_text(rendered), run_dir)


@pytest.mark.parametrize("field,value", [("hash_header", "X-A\nlog stdout"), ("hash_header", "X A")])
def test_values_that_would_break_the_configuration_are_refused(run_dir, field, value) -> None:
    bad = make_spec(algorithm="hdr", hashHeader="X-A").model_copy(update={field: value})
    with pytest.raises(ConfigError, match="cannot carry"):
        render(bad, run_dir)


def test_mysql_user_and_cookie_name_are_checked(run_dir) -> None:
    spec = make_spec(healthCheck={"type": "mysql", "mysqlUser": "ok"})
    bad = spec.model_copy(update={"health_check": spec.health_check.model_copy(update={"mysql_user": "a b"})})
    with pytest.raises(ConfigError, match="mysqlUser"):
        render(bad, run_dir)


@pytest.mark.parametrize("fields,message", [
    ({"mode": "tcp", "algorithm": "uri"}, "read HTTP requests"),
    ({"mode": "redirect", "sessionAffinity": {"type": "Cookie"}}, "Cookie session affinity"),
    ({"algorithm": "roundrobin", "hashType": "consistent"}, "hash algorithms"),
])
def test_combinations_the_api_refuses_are_refused_here_too(run_dir, fields, message) -> None:
    with pytest.raises(ConfigError, match=message):
        render(make_spec(**fields), run_dir)


@pytest.mark.parametrize("backend,message", [
    (Backend("x", "not-an-ip", 80), "not an IP address"),
    (Backend("x", "10.0.0.1", 0), "bad port"),
    (Backend("x", "10.0.0.1", 80, 300), "weight"),
    (Backend("x", "10.0.0.1", 80, 1, "gone"), "state"),  # type: ignore[arg-type]
])
def test_bad_backends_are_refused(run_dir, backend, message) -> None:
    with pytest.raises(ConfigError, match=message):
        render(make_spec(), run_dir, [backend])


def test_duplicate_backend_names_are_refused(run_dir) -> None:
    with pytest.raises(ConfigError, match="unique"):
        render(make_spec(), run_dir, [Backend("x", "10.0.0.1", 80), Backend("x", "10.0.0.2", 80)])


# -- the file on disk ------------------------------------------------------------------------

def test_fill_puts_servers_into_their_slots(run_dir) -> None:
    rendered = render(make_spec(sessionAffinity={"type": "Cookie"}), run_dir)
    text = disk_text(rendered)
    assert "server s1 10.0.0.10:8080 weight 3 cookie s1" in text
    assert "server s2 10.0.0.11:8080 disabled weight 1 cookie s2" in text  # draining starts out of rotation
    assert "server s3 10.0.0.12:8080 disabled weight 0 cookie s3" in text
    assert "server s4 0.0.0.0:0 disabled weight 1 cookie s4" in text
    assert configmap.disk_structure(text) == rendered.structure_hash
    assert f"setenv {configmap.STRUCTURE_ENV} {rendered.structure_hash}" in text.splitlines()[3]


def test_fill_refuses_slots_the_structure_lacks(run_dir) -> None:
    rendered = render(make_spec(), run_dir)
    entries = [configmap.SlotEntry(9, "web-9", "10.0.0.9", 80, 1, "ready")]
    with pytest.raises(ConfigError, match=r"\[9\]"):
        configmap.fill(rendered.files[configmap.CONFIG_FILE], entries)


@pytest.mark.parametrize("text", ["{}", "[1]", '[{"slot": 1}]', "not json",
                                  '[{"slot": 1, "name": "a", "address": "1.2.3.4", "port": 80, "weight": 1, '
                                  '"state": "ready", "extra": 1}]'])
def test_parse_servers_refuses_malformed_files(text) -> None:
    with pytest.raises(ConfigError):
        configmap.parse_servers(text)
