"""What a query answer means: a value, no data, or unavailable (never a zero made up)."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import urllib.parse

import pytest

from hakeeper.api.degradationpolicy import Trigger
from hakeeper.degradationpolicy.decide import classify
from hakeeper.degradationpolicy.metrics import PrometheusSource, reading_from_answer, reading_from_result


@pytest.mark.parametrize(("result", "outcome", "value", "words"), [
    ([{"metric": {}, "value": [1700000000.1, "0.93"]}], "value", 0.93, ""),
    # an infinity (a ratio over an idle denominator) is no measurement: it must never breach
    ([{"metric": {"job": "api"}, "value": [1700000000.1, "+Inf"]}], "no-data", None, "returned +Inf"),
    ([{"metric": {}, "value": [1700000000.1, "-Inf"]}], "no-data", None, "returned -Inf"),
    ([1700000000.1, "+Inf"], "no-data", None, "returned +Inf"),  # a scalar result
    ([{"metric": {}, "value": [1700000000.1, "1e308"]}], "value", 1e308, ""),  # large is still a value
    ([1700000000.1, "42"], "value", 42.0, ""),  # a scalar result
    ([], "no-data", None, "no series"),
    ([{"metric": {}, "value": [1700000000.1, "NaN"]}], "no-data", None, "NaN"),
    ([{"metric": {"a": "1"}, "value": [1, "1"]}, {"metric": {"a": "2"}, "value": [1, "2"]}], "unavailable", None,
     'returns 2 series ({a="1"}, {a="2"}...); wrap it in max() or sum()'),
    ([{"metric": {}, "values": [[1, "1"], [2, "2"]]}], "unavailable", None, "range vector"),
    ([1700000000.1, "soon"], "unavailable", None, "not a number"),
    # not Prometheus' shapes (found by the evaluation fuzz test: each raised and failed the whole
    # evaluation): unavailable, saying what was wrong
    ([{}], "unavailable", None, "the series has no value"),
    ([{"metric": {}}], "unavailable", None, "the series has no value"),
    ([{"value": []}], "unavailable", None, "a value that is not [time, number]: []"),
    ([{"metric": {}, "value": "5"}], "unavailable", None, "a value that is not [time, number]: 5"),
    ([None], "unavailable", None, "series 0 is not an object"),
    ([[]], "unavailable", None, "series 0 is not an object"),
    (["x"], "unavailable", None, "series 0 is not an object"),
    ([{"metric": {}, "value": [1, "1"]}, None], "unavailable", None, "series 1 is not an object"),
    ([{"metric": None, "value": [1, "1"]}, {"metric": [1], "value": [1, "2"]}], "unavailable", None,
     "returns 2 series ({}, {?}...)"),
    ([{"metric": {}, "histogram": [1, {"count": "3"}]}], "unavailable", None, "native histogram"),
])
def test_query_results_are_classified(result, outcome, value, words):
    reading = reading_from_result(result)
    assert reading.outcome == outcome
    assert reading.value == value
    assert words in reading.message


@pytest.mark.parametrize("operator", [">", "<"])
def test_an_infinity_neither_breaches_nor_recovers(operator):
    """+Inf above a `>` threshold (or -Inf below a `<` one) would breach if it counted as a value."""
    trigger = Trigger.model_validate({"name": "errors", "query": "q", "operator": operator, "threshold": 0.5})
    infinity = "+Inf" if operator == ">" else "-Inf"
    assert classify(trigger, reading_from_result([{"metric": {}, "value": [1, infinity]}])) == "NoData"
    # the control: a finite value past the threshold does breach
    finite = "0.9" if operator == ">" else "0.1"
    assert classify(trigger, reading_from_result([{"metric": {}, "value": [1, finite]}])) == "Breaching"


# -- the whole answer: warnings and infos ---------------------------------------------------------

# Recorded from Debian's Prometheus 2.42 with a remote_read endpoint that refuses connections
# (read_recent: true): the local value comes with a warning that the remote part is missing.
PROMETHEUS_REMOTE_READ_FAILED = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1795995389.570, "1"]}]},
    "warnings": ['remote_read: error sending request: Post "http://127.0.31.9:9/api/v1/read": dial tcp '
                 '127.0.31.9:9: connect: connection refused'],
}
# Thanos' shape of a partial response (a store that failed, partial_response allowed): not
# recorded from a running Thanos; the same envelope with its kind of warning.
THANOS_PARTIAL = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1795995389.570, "12"]}]},
    "warnings": ["receive 10.0.0.7:10901: rpc error: code = Unavailable desc = connection refused"],
}
# Prometheus 3's info annotation (a note on the query, not on the answer's completeness)
PROMETHEUS_INFO = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1795995389.570, "0.4"]}]},
    "infos": ['PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: '
              '"requests"'],
}


@pytest.mark.parametrize(("answer", "outcome", "value", "words"), [
    (PROMETHEUS_REMOTE_READ_FAILED, "unavailable", None, "with warnings, so the answer may be partial: remote_read"),
    (THANOS_PARTIAL, "unavailable", None, "receive 10.0.0.7:10901: rpc error"),
    ({**THANOS_PARTIAL, "warnings": []}, "value", 12.0, ""),  # the control: the same value without warnings
    (PROMETHEUS_INFO, "value", 0.4, ""),
    ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "unavailable", None,
     "Prometheus answered bad_data: parse error"),
    ({"status": "success", "data": {"resultType": "vector"}}, "unavailable", None, "no data.result"),
    ({"status": "success", "data": {"resultType": "vector", "result": []}}, "no-data", None, "no series"),
])
def test_an_answer_with_warnings_is_unavailable_not_a_reading(answer, outcome, value, words):
    reading = reading_from_answer(answer)
    assert (reading.outcome, reading.value) == (outcome, value)
    assert words in reading.message


class FakePrometheus:
    """An HTTP server on loopback answering /api/v1/query with what a test sets; it keeps each
    request's query parameters and Authorization header."""

    def __init__(self):
        self.answer: dict = {"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}}
        self.requests: list[tuple[dict, str | None]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                fake.requests.append((dict(urllib.parse.parse_qsl(url.query)), self.headers.get("Authorization")))
                body = json.dumps(fake.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_prometheus():
    fake = FakePrometheus()
    yield fake
    fake.close()


def test_each_query_asks_for_no_partial_response_and_warnings_make_it_unavailable(fake_prometheus):
    source = PrometheusSource(f"http://127.0.0.1:{fake_prometheus.port}", 2)
    fake_prometheus.answer = THANOS_PARTIAL
    reading = source.read("max(load)")
    assert reading.outcome == "unavailable" and "rpc error" in reading.message
    params, _ = fake_prometheus.requests[-1]
    assert params == {"query": "max(load)", "timeout": "2s", "partial_response": "false"}
    fake_prometheus.answer = {**THANOS_PARTIAL, "warnings": []}  # the control: the same answer, complete
    assert source.read("max(load)").value == 12.0


# -- credentials in prometheus.url ---------------------------------------------------------------

SECRET = "s3cr3t-pw"


def test_the_urls_credentials_authenticate_and_never_show(fake_prometheus):
    port = fake_prometheus.port
    source = PrometheusSource(f"http://alice:{SECRET}@127.0.0.1:{port}", 2)
    assert source.read("max(load)").value == 1.0
    # the control: the credentials do reach Prometheus, as Basic authentication
    assert fake_prometheus.requests[-1][1] == "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert source.shown_url == f"http://alice:***@127.0.0.1:{port}"
    # a warning or an error that quotes the URL
    fake_prometheus.answer = {**THANOS_PARTIAL, "warnings": [f"remote_read http://alice:{SECRET}@127.0.0.1: failed"]}
    warned = source.read("max(load)")
    assert "http://alice:***@127.0.0.1" in warned.message and SECRET not in warned.message


def test_an_unreachable_prometheus_with_credentials_shows_them_hidden():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reading = PrometheusSource(f"http://alice:{SECRET}@127.0.0.1:{port}", 1).read("up")
    assert reading.outcome == "unavailable"
    assert reading.message == f"cannot reach Prometheus at http://alice:***@127.0.0.1:{port}: Connection refused"
    token_only = PrometheusSource(f"https://{SECRET}@127.0.0.1:{port}", 1).read("up")
    assert f"https://***@127.0.0.1:{port}" in token_only.message and SECRET not in token_only.message


def test_the_environment_proxy_is_read_once_for_the_prometheus_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests would read the environment (and ~/.netrc) at every query; the source reads the
    proxy for its URL once, honouring NO_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "prometheus.monitoring.svc")
    proxied = PrometheusSource("http://prometheus.example:9090", 1.0)
    direct = PrometheusSource("http://prometheus.monitoring.svc:9090", 1.0)
    session = proxied.client._session
    assert session.trust_env is False and session.proxies.get("http") == "http://proxy.example:3128"
    assert direct.client._session.proxies == {}
