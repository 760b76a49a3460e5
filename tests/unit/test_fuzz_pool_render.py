"""Fuzzing the pool's render step: random specs, hostile strings included, through the
validation the operator and `hakeeper render` use, then through the renderers.

Every spec ends in one of two ways: refused with a message (the CRD schema and its CEL rules,
the model, or the renderer's own ConfigError), or rendered into a file the real program
accepts (`haproxy -c`, `keepalived -t`). Anything else (an exception escaping, a file the
program rejects or warns about) is a fault. The real binaries judge, not a parser of ours.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from hakeeper.api.configmaps import haproxy as haproxy_cm
from hakeeper.api.configmaps import keepalived as keepalived_cm
from hakeeper.api.loadbalancerpool import (
    HAPROXY_ALGORITHMS,
    HASH_ALGORITHMS,
    LVS_ALGORITHMS,
    PEERS_PORT,
    LoadBalancerPoolSpec,
)
from hakeeper.api.offline import InvalidManifest
from hakeeper.loadbalancerpool.backends import Backend
from hakeeper.loadbalancerpool.haproxy import config as haproxy_config
from hakeeper.loadbalancerpool.lvs import config as lvs_config
from hakeeper.loadbalancerpool.objects import FRONTEND_PORT, RUN_DIR
from hakeeper.loadbalancerpool.render import RenderError, parse_backend, render_documents

from ..support.certs import make_cert
from .fuzz_strategies import fuzz, hostile_text, judged, mostly, mutated, spec_strategy

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
CERT = make_cert()
REFUSALS = (haproxy_cm.ConfigError, keepalived_cm.ConfigError, RenderError, InvalidManifest)


def host_interface() -> str:
    """keepalived -t checks that the VRRP interface exists on this machine (and is not lo)."""
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    return "eth0" if "eth0" in names else names[0]


def haproxy_accepts(text: str, directory: pathlib.Path) -> None:
    """`haproxy -c`: any alert or warning fails too (HAProxy starts with a warning, but it
    means a line was not read as written)."""
    (directory / haproxy_config.STATE_FILE).write_text("1\n")  # as the agent leaves it in a pod
    (directory / "tls.pem").write_text(CERT.pem)  # spec.tls: the agent writes it from the Secret
    # request classes: the agent writes the refused ones before HAProxy starts (empty: none refused)
    (directory / haproxy_cm.REFUSED_ACL_FILE).write_text("")
    path = directory / "haproxy.cfg"
    path.write_text(text)
    done = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "POD_IP": "127.0.0.1"})
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "[WARNING]" not in output and "[ALERT]" not in output, output + "\n" + text
    # what -c does not check: two frontends on one address:port pass, and HAProxy starts with
    # both (SO_REUSEPORT), the kernel spreading the clients over them
    binds = re.findall(r"^\s+bind (\S+)", text, re.MULTILINE)
    assert len(binds) == len(set(binds)), binds


def keepalived_accepts(text: str, directory: pathlib.Path) -> None:
    """`keepalived -t` (config test mode) exits non-zero on any error or warning it logs."""
    path = directory / "keepalived.conf"
    path.write_text(text)
    done = subprocess.run([KEEPALIVED, "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr + "\n" + text


# -- specs: drawn from the CRD schema, the cross-field rules mostly arranged ------------------

def _pool_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A spec from the schema with the CEL rules' pairings mostly kept, so that most unmutated
    specs pass and reach the renderer (a few are left to the rules on purpose)."""
    spec = draw(spec_strategy("LoadBalancerPool", overrides={
        # the ports the balancer pod itself uses: the client frontend's, the default metrics port
        "spec.balancer.metricsPort": st.one_of(st.integers(1, 65535), st.sampled_from([FRONTEND_PORT, PEERS_PORT,
                                                                                      8404])),
    }))
    # about four in ten lvs (the draw leans to small numbers, so no plain coin)
    engine = spec["engine"] = "lvs" if draw(st.integers(0, 99)) % 5 in (1, 2) else "haproxy"
    if engine == "haproxy" and draw(st.booleans()):
        del spec["engine"]  # the default
    spec.pop("dns", None)  # engine dns renders no balancer configuration (tests/unit/test_dns_pool.py)
    # optional in the schema (engine dns may publish other pools instead), required by haproxy and lvs
    backends = spec.setdefault("backends", {"service": "web", "port": 8080})
    if "selector" in backends and "service" in backends:
        backends.pop("selector" if draw(st.booleans()) else "service")
    elif "selector" not in backends and "service" not in backends:
        backends["service"] = "web"
    for selector in [backends.get("selector")] + [r["selector"] for r in backends.get("weightRules", [])]:
        if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
            selector["matchLabels"] = {"app": "web"}
    algorithms = HAPROXY_ALGORITHMS if engine == "haproxy" else LVS_ALGORITHMS
    if "algorithm" in spec or draw(st.booleans()):
        spec["algorithm"] = draw(st.sampled_from(algorithms))
    algorithm = spec.get("algorithm")
    if algorithm == "hdr":
        spec.setdefault("hashHeader", "X-User")
    else:
        spec.pop("hashHeader", None)
    if algorithm not in HASH_ALGORITHMS:
        spec.pop("hashType", None)
    check = spec.setdefault("healthCheck", {})
    if engine == "lvs" and check.get("type") == "mysql":
        check["type"] = "tcp"
    if check.get("type") != "http":
        check.pop("path", None)
        check.pop("expectStatus", None)
    if check.get("type") != "mysql":
        check.pop("mysqlUser", None)
    if "interval" in check and "timeout" in check:
        check["timeout"] = check["interval"]  # the rule: timeout <= interval
    affinity = spec.setdefault("sessionAffinity", {})
    if affinity.get("type") != "Cookie":
        affinity.pop("cookie", None)
    elif affinity.get("cookie", {}).get("mode") == "prefix":
        affinity["cookie"].pop("maxIdle", None)
    if engine == "haproxy":
        spec.pop("lvs", None)
        if spec.get("mode") == "tcp" and algorithm in ("uri", "hdr"):
            spec["mode"] = "http"
        if affinity.get("type") == "Cookie":
            spec["mode"] = "http"
    else:
        for key in ("mode", "retryOn", "hashHeader"):
            spec.pop(key, None)
        if affinity.get("type") == "Cookie":
            affinity["type"] = "SourceIP"
            affinity.pop("cookie", None)
        lvs = spec.setdefault("lvs", {"virtualIP": "10.0.0.100", "port": 80, "vrrp": {"virtualRouterID": 51}})
        lvs["vrrp"]["interface"] = host_interface()
        if lvs.get("forwarding", "NAT") != "NAT":
            backends["port"] = lvs["port"]
        if lvs.get("protocol") == "UDP" and check.get("type") in ("http", "mysql"):
            check.clear()
    if engine != "haproxy" or spec.get("mode", "http") != "http":
        spec.pop("tls", None)  # TLS termination needs mode http
    return spec


pool_specs = mutated(st.composite(_pool_valid)())
good_names = st.one_of(st.sampled_from(["web", "a", "web.v1", "x" * 63, "x" * 64]),
                       st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,70}[a-z0-9])?\Z"))
pool_names = mostly(good_names, hostile_text)
good_backends = st.lists(st.builds(
    Backend, name=st.from_regex(r"\A[a-z0-9][-a-z0-9.]{0,40}\Z"), address=st.ip_addresses(v=4).map(str),
    port=st.sampled_from([8080, 80]) | st.integers(1, 65535), weight=st.integers(0, 256),
    state=st.sampled_from(["ready", "ready", "draining", "down"])), max_size=12, unique_by=lambda b: b.name)
odd_backends = st.lists(st.builds(
    Backend, name=st.one_of(st.from_regex(r"\A[a-z0-9][-a-z0-9.]{0,40}\Z"), hostile_text),
    address=st.one_of(st.ip_addresses(v=4).map(str), st.sampled_from(["::1", "fe80::1", "10.0.0.256", ""])),
    port=st.one_of(st.integers(1, 65535), st.sampled_from([0, -1, 65536])),
    weight=st.one_of(st.integers(0, 256), st.sampled_from([-1, 257])),
    state=st.sampled_from(["ready", "draining", "down", "gone"])), max_size=6)
backend_lists = mostly(good_backends, odd_backends, odds=3)


passwords = mostly(st.one_of(st.none(), st.text(alphabet="abcXYZ019_.,:;+=*%^&()[]<>|/?~@-", min_size=1, max_size=8)),
                   hostile_text)


@fuzz(200)
@given(spec=pool_specs, name=pool_names, backends=backend_lists, password=passwords)
def test_fuzz_pool_spec_is_refused_or_renders_what_the_balancer_accepts(spec, name, backends, password, tmp_path):
    model, why = judged("LoadBalancerPool", name, spec, LoadBalancerPoolSpec)
    if model is None:
        assert why.strip(), "a refusal must say why"
        event("refused by the schema, its rules or the model")
        return
    try:
        if model.engine == "haproxy":
            rendered = haproxy_config.render(name, model, backends, run_dir=str(tmp_path))
            text = haproxy_cm.on_disk(rendered.files[haproxy_cm.CONFIG_FILE],
                                      haproxy_cm.parse_servers(rendered.files[haproxy_cm.SERVERS_FILE]))
        else:
            # the VRRP password: in the file (auth_password), or put in by the agent (for_node)
            rendered_lvs = lvs_config.render(name, model, backends, auth_password=password,
                                             nodes=["node-a", "node-b"])
            text = keepalived_cm.for_node(rendered_lvs.files[keepalived_cm.CONFIG_FILE], 100, password or "s3cret")
    except REFUSALS as error:
        assert str(error).strip(), "a refusal must say why"
        event(f"{model.engine}: refused by the renderer")
        return
    event(f"{model.engine}: rendered")
    if model.engine == "haproxy":
        haproxy_accepts(text, tmp_path)
    else:
        keepalived_accepts(text, tmp_path)


# -- `hakeeper render`: the manifest and -b arguments as text -------------------------------

backend_args = st.one_of(
    st.builds(lambda n, a, p, w: f"{n}{a}:{p}{w}", st.sampled_from(["", "web-0=", "a.b_c-d="]),
              st.ip_addresses(v=4).map(str), st.integers(0, 70000).map(str) | st.just("9" * 5000),
              st.sampled_from(["", "@0", "@3", "@256", "@257", "@" + "9" * 5000])),
    hostile_text)


@fuzz(60)
@given(spec=pool_specs, name=pool_names, args=st.lists(backend_args, max_size=4))
def test_fuzz_hakeeper_render_refuses_or_prints(spec, name, args, tmp_path):
    """The offline command's path: YAML text in, the API server's words or a config out."""
    manifest = yaml.safe_dump({"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool",
                               "metadata": {"name": name}, "spec": spec})
    try:
        backends = [parse_backend(arg) for arg in args]
        out = render_documents(manifest, backends)
    except REFUSALS as error:
        assert str(error).strip()
        return
    except ValueError as error:  # the model refusing what the schema let through: explained, not a crash
        pytest.fail(f"render_documents let a bare {type(error).__name__} out: {error}")
    assert out.startswith("# LoadBalancerPool ")
    if "\nglobal_defs {\n" in out:
        keepalived_accepts(out, tmp_path)
    else:  # the pod's run directory, here: its state file missing would be a warning
        haproxy_accepts(out.replace(f" {RUN_DIR}/", f" {tmp_path}/"), tmp_path)


# -- what the fuzzer found, one case each ----------------------------------------------------

def _haproxy_spec(**fields: Any) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({"backends": {"service": "web", "port": 8080}, **fields})


def test_retry_on_none_with_other_conditions_is_refused_and_repeats_are_written_once(tmp_path):
    # haproxy: "'retry-on' 'none' keyworld only usable alone", for ["none", "none"] too
    with pytest.raises(haproxy_cm.ConfigError, match="retryOn: none"):
        haproxy_config.render("web", _haproxy_spec(retryOn=["none", "503"]), [])
    for retry_on in (["none", "none"], ["503", "conn-failure", "503"]):
        rendered = haproxy_config.render("web", _haproxy_spec(retryOn=retry_on), [], run_dir=str(tmp_path))
        cfg = rendered.files[haproxy_cm.CONFIG_FILE]
        assert f"retry-on {' '.join(dict.fromkeys(retry_on))}\n" in cfg
        haproxy_accepts(haproxy_cm.on_disk(cfg, []), tmp_path)


@pytest.mark.parametrize(("fields", "field"), [
    ({"timeouts": {"connect": "9999h"}}, "timeouts.connect"),
    ({"healthCheck": {"interval": "597h", "timeout": "1s"}}, "healthCheck.interval"),
    ({"server": {"slowstart": "600h"}}, "server.slowstart"),
    ({"sessionAffinity": {"type": "Cookie", "cookie": {"maxIdle": "99999999999999999999999999999h"}}},
     "sessionAffinity.cookie.maxIdle"),
])
def test_a_duration_beyond_haproxys_timers_is_refused_by_name(fields, field):
    # haproxy: "timer overflow in argument '35996400000ms' to 'timeout connect'"
    with pytest.raises(haproxy_cm.ConfigError, match=rf"^{re.escape(field)} .* longer than HAProxy's longest timer"):
        haproxy_config.render("web", _haproxy_spec(**fields), [])


def test_the_longest_timer_haproxy_takes_still_renders(tmp_path):
    rendered = haproxy_config.render("web", _haproxy_spec(timeouts={"client": "2147483647ms"},
                                                          healthCheck={"interval": "596h", "timeout": "1s"}),
                                     [], run_dir=str(tmp_path))
    haproxy_accepts(haproxy_cm.on_disk(rendered.files[haproxy_cm.CONFIG_FILE], []), tmp_path)


@pytest.mark.parametrize("arg", ["10.0.0.1:" + "9" * 5000, "10.0.0.1:80@" + "9" * 5000, "10.0.0.1:80\n"])
def test_a_backend_argument_with_endless_digits_is_refused_not_a_traceback(arg):
    # int() raises a bare ValueError past 4300 digits, which `hakeeper render` does not catch
    with pytest.raises(RenderError, match=r"expected \[NAME=\]ADDRESS:PORT"):
        parse_backend(arg)


def _lvs_spec(**lvs_fields: Any) -> LoadBalancerPoolSpec:
    check = lvs_fields.pop("healthCheck", {"type": "tcp"})
    vrrp = {"virtualRouterID": 51, "interface": lvs_fields.pop("interface", host_interface())}
    return LoadBalancerPoolSpec.model_validate({
        "engine": "lvs", "backends": {"service": "web", "port": 8080}, "healthCheck": check,
        "lvs": {"virtualIP": "10.0.0.100", "port": 80, "vrrp": vrrp, **lvs_fields}})


def test_a_trailing_newline_does_not_slip_into_keepalived_conf():
    # "$" matches before a final newline: a pool named "x\n" split the file's lines
    with pytest.raises(keepalived_cm.ConfigError, match="pool name"):
        lvs_config.render("x\n", _lvs_spec(), [])
    spec = _lvs_spec().model_copy(deep=True)
    assert spec.lvs is not None
    spec.lvs.vrrp.interface = "eth0\n"  # the model refuses it; the renderer is the last line of defence
    with pytest.raises(keepalived_cm.ConfigError, match="interface"):
        lvs_config.render("web", spec, [])
    spec = _lvs_spec(healthCheck={"type": "http", "path": "/healthz"})
    spec.health_check.path = "/healthz\n"
    with pytest.raises(keepalived_cm.ConfigError, match="health check path"):
        lvs_config.render("web", spec, [])


def test_hakeeper_render_refuses_a_final_newline_as_the_api_server_does():
    # the schema check's pattern took a final newline (Python's "$"); the model then raised a
    # bare ValidationError, a traceback from `hakeeper render`. Now the schema check refuses it,
    # with the API server's words (Go's "$" is the end of the text)
    manifest = ("apiVersion: hakeeper.io/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: web}\n"
                'spec: {backends: {service: "web\\n", port: 80}}\n')
    with pytest.raises(InvalidManifest, match=r'\* spec\.backends\.service: Invalid value: "web\\n": .* should match'):
        render_documents(manifest, [])


def test_the_metrics_port_cannot_be_the_client_port(tmp_path):
    # HAProxy started with both frontends on 8080 and answered about half the clients with
    # the metrics frontend's 404 (tried by hand: 200 404 404 404 404 200 200 404 200 404)
    with pytest.raises(haproxy_cm.ConfigError, match="balancer.metricsPort 8080"):
        haproxy_config.render("web", _haproxy_spec(balancer={"metricsPort": 8080}), [])
    haproxy_config.render("web", _haproxy_spec(balancer={"metricsPort": 8081}), [])
    with pytest.raises(haproxy_cm.ConfigError, match="balancer.metricsPort 10000 is the port the balancers share"):
        haproxy_config.render("web", _haproxy_spec(balancer={"metricsPort": PEERS_PORT}), [])


def test_a_health_check_timer_beyond_keepalived_is_refused_and_the_longest_renders(tmp_path):
    # keepalived -t: "number '4500' outside range [0.000001, 4294.967295]" for a 1.25h timeout
    for check, what in (({"type": "tcp", "interval": "2h", "timeout": "1.25h"}, "timeout"),
                        ({"type": "none", "interval": "99999999999999999999999999999h"}, "interval")):
        with pytest.raises(keepalived_cm.ConfigError, match=f"health check {what} .* longer than keepalived"):
            lvs_config.render("web", _lvs_spec(healthCheck=check), [Backend("web-0", "10.0.0.7", 8080)])
    longest = _lvs_spec(healthCheck={"type": "tcp", "interval": "5000000h", "timeout": "4294967ms"})
    rendered = lvs_config.render("web", longest, [Backend("web-0", "10.0.0.7", 8080)])
    keepalived_accepts(rendered.files[keepalived_cm.CONFIG_FILE], tmp_path)
