"""spec.tls: the lines rendered into haproxy.cfg, the balancer pod's pieces, the operator's check
of the Secret and what a pass applies around it, and the agent's decision about the certificate.

The real HAProxy judges the same lines in tests/integration/test_haproxy_tls.py; the CEL rules are
in tests/e2e/invalid_specs.py (run offline by test_offline_validation.py, at the API server by
the e2e suite)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from hakeeper.agents import haproxy_tls as agent_tls
from hakeeper.api.conditions import get_condition
from hakeeper.api.configmaps.haproxy import ConfigError
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool import objects, reconcile
from hakeeper.loadbalancerpool.haproxy import tls, tls_secret
from hakeeper.loadbalancerpool.haproxy.config import render
from hakeeper.loadbalancerpool.observe import Watched

from ..support.certs import b64, make_cert

BACKENDS = {"selector": {"matchLabels": {"app": "web"}}, "port": 8080}
CERT = make_cert("a.example")
OTHER = make_cert("b.example")


def spec(**extra: Any) -> LoadBalancerPoolSpec:
    return LoadBalancerPoolSpec.model_validate({"backends": BACKENDS, **extra})


def cfg(pool_spec: LoadBalancerPoolSpec) -> str:
    return render("web", pool_spec, []).files["haproxy.cfg"]


# -- haproxy.cfg ------------------------------------------------------------------------------

def test_without_tls_nothing_of_it_is_rendered() -> None:
    text = cfg(spec())
    assert "ssl" not in text and "8443" not in text and "X-Forwarded-Proto" not in text


def test_tls_binds_the_agents_file_and_sets_x_forwarded_proto() -> None:
    text = cfg(spec(tls={"secretName": "web-tls"}))
    assert '    bind "${POD_IP}:8443" ssl crt /var/run/hakeeper/tls.pem alpn h2,http/1.1\n' in text
    assert "    http-request set-header X-Forwarded-Proto https if { ssl_fc }\n" in text
    assert "    http-request set-header X-Forwarded-Proto http unless { ssl_fc }\n" in text
    assert "    ssl-default-bind-options ssl-min-ver TLSv1.2\n" in text
    assert "redirect" not in text  # both binds serve
    # the plain bind stays, and everything sits in the clients frontend, before its backend
    frontend = text.split("frontend clients\n")[1].split("\n\n")[0]
    assert 'bind "${POD_IP}:8080"' in frontend and "ssl crt" in frontend and "X-Forwarded-Proto" in frontend


@pytest.mark.parametrize(("port", "suffix"), [(443, ""), (8443, ":8443")])
def test_redirect_goes_to_the_https_port_without_the_plain_one(port: int, suffix: str) -> None:
    text = cfg(spec(tls={"secretName": "web-tls", "redirectHTTP": True, "port": port}))
    assert ("    http-request redirect location https://%[req.hdr(host),regsub(:[0-9]+$,)]"
            f"{suffix}%[pathq] code 308 unless {{ ssl_fc }} || {{ path_beg /.well-known/acme-challenge/ }}\n") in text


def test_the_https_port_cannot_be_taken_twice() -> None:
    with pytest.raises(ConfigError, match="HTTPS port 8443"):
        render("web", spec(tls={"secretName": "web-tls"}), [], frontend_port=8443)
    render("web", spec(tls={"secretName": "web-tls"}), [], frontend_port=8081)  # control


def test_the_renderer_refuses_tls_outside_mode_http() -> None:
    """What the CEL rule refuses at apply; the renderer's own last line of defence."""
    bad = spec(tls={"secretName": "web-tls"}).model_copy(update={"mode": "tcp"})
    with pytest.raises(ConfigError, match="tls"):
        render("web", bad, [])


# -- the balancer pod -------------------------------------------------------------------------

def _containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}


def test_only_the_agent_mounts_the_secret_and_only_its_two_keys() -> None:
    deployment = objects.deployment("web", "shop", spec(tls={"secretName": "web-tls"}), "agent:1", "h")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls-secret"]["secret"] == {
        "secretName": "web-tls", "defaultMode": 0o444,
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}
    containers = _containers(deployment)
    assert {"name": "tls-secret", "mountPath": tls.SECRET_DIR, "readOnly": True} in containers["agent"]["volumeMounts"]
    assert all(m["name"] != "tls-secret" for m in containers["haproxy"]["volumeMounts"])
    args = containers["agent"]["args"]
    assert args[args.index("--tls-dir") + 1] == tls.SECRET_DIR
    assert args[args.index("--tls-file") + 1] == "/var/run/hakeeper/tls.pem"
    assert {"name": "https", "containerPort": 8443, "protocol": "TCP"} in containers["haproxy"]["ports"]


def test_without_tls_the_pod_and_service_are_as_before() -> None:
    plain = spec()
    deployment = objects.deployment("web", "shop", plain, "agent:1", "h")
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == ["run", "agent-api-access"]
    assert "--tls-dir" not in _containers(deployment)["agent"]["args"]
    assert [p["name"] for p in objects.client_service("web", "shop", plain)["spec"]["ports"]] == ["frontend", "metrics"]


def test_the_service_serves_https_on_tls_port() -> None:
    service = objects.client_service("web", "shop", spec(tls={"secretName": "web-tls", "port": 8443}))
    assert {"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"} in service["spec"]["ports"]


# -- the operator's check of the Secret ---------------------------------------------------------

def _why(secret: dict[str, Any] | None) -> str:
    verdict = tls_secret.check(secret, "shop", "web-tls")
    assert verdict is not None and verdict.reason == "TLSSecretInvalid" and not verdict.status
    return verdict.message


def test_a_good_secret_passes_with_an_rsa_key_and_a_chain_too() -> None:
    assert tls_secret.check(CERT.secret("web-tls"), "shop", "web-tls") is None
    chained = CERT.secret("web-tls")
    chained["data"]["tls.crt"] = b64(CERT.cert_pem + OTHER.cert_pem)  # leaf first, then the chain
    assert tls_secret.check(chained, "shop", "web-tls") is None


@pytest.mark.parametrize(("change", "words"), [
    (lambda s: None, "the Secret does not exist"),
    (lambda s: {**s, "type": "Opaque"}, "has type Opaque, not kubernetes.io/tls"),
    (lambda s: {**s, "data": {"tls.crt": s["data"]["tls.crt"]}}, "tls.key is missing or empty"),
    (lambda s: {**s, "data": {**s["data"], "tls.crt": "!!notbase64"}}, "tls.crt is not base64"),
    (lambda s: {**s, "data": {**s["data"], "tls.crt": b64("not a certificate")}}, "tls.crt holds no PEM certificate"),
    (lambda s: {**s, "data": {**s["data"], "tls.key": b64("-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                          "-----END PRIVATE KEY-----\n")}},
     "tls.key holds no PEM private key"),
    (lambda s: {**s, "data": {**s["data"], "tls.key": b64(OTHER.key_pem)}},
     "tls.key is not the key of the first certificate in tls.crt"),
    (lambda s: {**s, "data": {**s["data"], "tls.crt": b64(OTHER.cert_pem + CERT.cert_pem)}},
     "tls.key is not the key of the first certificate in tls.crt"),
], ids=["missing", "opaque", "no-key", "not-base64", "no-pem", "bad-key", "other-key", "leaf-not-first"])
def test_a_bad_secret_is_refused_saying_why(change: Any, words: str) -> None:
    message = _why(change(CERT.secret("web-tls")))
    assert words in message and "shop/web-tls" in message


def test_an_encrypted_key_is_refused_and_no_secret_data_reaches_the_message() -> None:
    key = load_pem_private_key(CERT.key_pem.encode(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pw")).decode()
    secret = {**CERT.secret("web-tls"), "data": {"tls.crt": b64(CERT.cert_pem), "tls.key": b64(encrypted)}}
    message = _why(secret)
    assert "tls.key is encrypted" in message
    for data in secret["data"].values():
        assert data[:20] not in message and base64.b64decode(data)[30:50].decode() not in message


def test_serving_secret_reads_the_deployments_volume() -> None:
    deployment = objects.deployment("web", "shop", spec(tls={"secretName": "web-tls"}), "agent:1", "h")
    assert tls_secret.serving_secret(deployment) == "web-tls"
    assert tls_secret.serving_secret(objects.deployment("web", "shop", spec(), "agent:1", "h")) is None
    assert tls_secret.serving_secret(None) is None


# -- one pass with a stand-in API server --------------------------------------------------------

class Api:
    """Gets answer from `objects`; applies are recorded."""

    def __init__(self, objects_: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects_
        self.applied: list[dict[str, Any]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def apply_all(self, objs: Any) -> list[Any]:
        self.applied += list(objs)
        return list(objs)

    def delete(self, obj: Any) -> None:
        pass


BODY = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "LoadBalancerPool",
        "metadata": {"name": "web", "namespace": "shop", "generation": 3, "uid": "u"},
        "spec": {"backends": BACKENDS, "tls": {"secretName": "web-tls"}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "ok",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2}]}}


def _pass(api: Api) -> reconcile.Outcome:
    return reconcile.reconcile(api, BODY, LoadBalancerPoolSpec.model_validate(BODY["spec"]),  # type: ignore[arg-type]
                               Watched())


def test_a_bad_secret_for_balancers_that_do_not_serve_it_yet_applies_nothing() -> None:
    api = Api({("Secret", "web-tls"): {**CERT.secret("web-tls"), "type": "Opaque"}})
    outcome = _pass(api)
    assert api.applied == []
    assert outcome.refused is not None and outcome.refused.reason == "TLSSecretInvalid"
    ready = get_condition(outcome.status["conditions"], "Ready")
    assert ready["status"] == "False" and ready["reason"] == "TLSSecretInvalid" and ready["observedGeneration"] == 3
    assert outcome.status["observedGeneration"] == 3


def test_a_good_secret_applies_the_pool() -> None:
    """The control: the same pass with a good Secret applies the Deployment that mounts it."""
    api = Api({("Secret", "web-tls"): CERT.secret("web-tls")})
    outcome = _pass(api)
    assert outcome.refused is None
    kinds = [o["kind"] for o in api.applied]
    assert "Deployment" in kinds and "ConfigMap" in kinds
    assert get_condition(outcome.status["conditions"], "Ready")["reason"] != "TLSSecretInvalid"


def test_a_broken_rotation_keeps_applying_backends_but_says_not_ready() -> None:
    """The balancers already mount the Secret: backend changes keep reaching them (their agents
    refuse the broken certificate at HAProxy), and Ready says what is wrong."""
    serving = objects.deployment("web", "shop", LoadBalancerPoolSpec.model_validate(BODY["spec"]), "a:1", "h")
    api = Api({("Secret", "web-tls"): {**CERT.secret("web-tls"), "data": {"tls.crt": b64(CERT.cert_pem),
                                                                          "tls.key": b64(OTHER.key_pem)}},
               ("Deployment", "web-haproxy"): serving})
    outcome = _pass(api)
    assert "ConfigMap" in [o["kind"] for o in api.applied]
    assert outcome.refused is not None
    ready = get_condition(outcome.status["conditions"], "Ready")
    assert ready["status"] == "False" and "not the key of the first certificate" in ready["message"]
    assert "BackendsAvailable" in [c["type"] for c in outcome.status["conditions"]]  # the rest as usual


# -- the agent's decision -----------------------------------------------------------------------

SOURCE = agent_tls.joined(CERT.cert_pem, CERT.key_pem)
NEW = agent_tls.joined(OTHER.cert_pem, OTHER.key_pem)


def test_joined_has_no_blank_line_and_fingerprints_match_haproxys_format() -> None:
    assert "\n\n" not in agent_tls.joined(CERT.cert_pem + "\n\n", "\n" + CERT.key_pem)
    assert agent_tls.fingerprint(SOURCE) == CERT.fingerprint
    assert agent_tls.fingerprint("no certificate") is None
    assert agent_tls.served_fingerprint(f"Filename: /x\nSHA1 FingerPrint: {CERT.fingerprint}\n") == CERT.fingerprint
    assert agent_tls.served_fingerprint("Can't display the certificate: Not found or the certificate is a bundle!") \
        is None


def test_before_haproxy_runs_only_the_file_is_written() -> None:
    d = agent_tls.decide(agent_tls.Observed(SOURCE, None, running=False))
    assert d == agent_tls.Decision(write=SOURCE)


def test_a_worker_without_the_certificate_in_its_configuration_gets_the_file_only() -> None:
    d = agent_tls.decide(agent_tls.Observed(SOURCE, None, running=True, loaded=False))
    assert d == agent_tls.Decision(write=SOURCE)


def test_a_rotated_secret_is_pushed_then_written() -> None:
    d = agent_tls.decide(agent_tls.Observed(NEW, SOURCE, running=True, loaded=True, served=CERT.fingerprint))
    assert d == agent_tls.Decision(push=NEW, write=NEW)


def test_in_step_nothing_happens() -> None:
    d = agent_tls.decide(agent_tls.Observed(SOURCE, SOURCE, running=True, loaded=True, served=CERT.fingerprint))
    assert d == agent_tls.Decision()


def test_a_served_certificate_other_than_the_files_is_pushed() -> None:
    """E.g. the file was replaced by hand: the running worker still serves the old one."""
    d = agent_tls.decide(agent_tls.Observed(NEW, NEW, running=True, loaded=True, served=CERT.fingerprint))
    assert d == agent_tls.Decision(push=NEW, write=None)


def test_a_refused_certificate_is_not_pushed_again_until_the_secret_changes() -> None:
    observed = agent_tls.Observed(NEW, SOURCE, running=True, loaded=True, served=CERT.fingerprint, refused=NEW)
    assert agent_tls.decide(observed).push is None and agent_tls.decide(observed).write is None
    newer = agent_tls.joined(make_cert("c").cert_pem, make_cert("c").key_pem)
    assert agent_tls.decide(agent_tls.Observed(newer, SOURCE, running=True, loaded=True, served=CERT.fingerprint,
                                               refused=NEW)).push == newer


def test_an_unreadable_secret_volume_waits() -> None:
    d = agent_tls.decide(agent_tls.Observed(None, SOURCE, running=True, loaded=True, served=CERT.fingerprint))
    assert d.push is None and d.write is None and d.waiting


def test_read_source_pairs_the_two_files(tmp_path: Any) -> None:
    (tmp_path / "tls.crt").write_text(CERT.cert_pem)
    assert agent_tls.read_source(str(tmp_path)) is None  # no key yet
    (tmp_path / "tls.key").write_text(CERT.key_pem)
    assert agent_tls.read_source(str(tmp_path)) == SOURCE
