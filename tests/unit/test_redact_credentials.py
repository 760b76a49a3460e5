"""Credentials in a DegradationPolicy's prometheus.url never show: not in the status, not in an
Event, not in the log. Each place that formats the URL or text that may quote it:
- metrics.PrometheusSource's messages (test_degradation_metrics.py: reachable and not);
- the status and Events of an evaluation (here, through the real Evaluator);
- handlers.read_spec's InvalidSpec message (the API server's words quote the value);
- platform.loop.describe, for a failed pass's Ready condition, Warning and log line;
- the log: every record, kopf's debug dumps of whole objects included (platform.redact's filter).
"""

from __future__ import annotations

import io
import json
import logging
import socket

import kopf
import pytest

from hakeeper.api.degradationpolicy import DegradationPolicySpec
from hakeeper.degradationpolicy.act import Scaler
from hakeeper.degradationpolicy.cycle import Evaluator
from hakeeper.degradationpolicy.decide import Memory
from hakeeper.degradationpolicy.handlers import read_spec
from hakeeper.platform import loop
from hakeeper.platform.redact import RedactingFilter, redact_logs, redact_url, scrub, secrets_of

from ..integration.prometheus_support import Fleet, deployment

SECRET = "s3cr3t-pw"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("url", "shown"), [
    (f"http://alice:{SECRET}@prom:9090", "http://alice:***@prom:9090"),
    (f"https://alice:{SECRET}@prom.example:9090/prefix?x=1", "https://alice:***@prom.example:9090/prefix?x=1"),
    (f"http://{SECRET}@prom:9090", "http://***@prom:9090"),  # a user alone may be a token
    ("http://alice:p@ss@prom:9090", "http://alice:***@prom:9090"),  # a raw "@": up to the last one
    ("http://prom:9090/api", "http://prom:9090/api"),  # nothing to hide
    ("http://prom:9090/x?next=http://a@b", "http://prom:9090/x?next=http://***@b"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_scrub_hides_urls_in_text_and_the_bare_secret():
    url = f"http://alice:{SECRET}%21@prom:9090"
    assert set(secrets_of(url)) == {f"{SECRET}%21", f"{SECRET}!"}
    text = f"Failed to parse: {url}; password {SECRET}! rejected"
    assert scrub(text, secrets_of(url)) == "Failed to parse: http://alice:***@prom:9090; password *** rejected"
    assert scrub("ab and ab", ("ab",)) == "ab and ab"  # too short to replace as bare text


def test_status_and_events_of_an_evaluation_hide_the_credentials():
    port = closed_port()
    spec = DegradationPolicySpec.model_validate({
        "prometheus": {"url": f"http://alice:{SECRET}@127.0.0.1:{port}", "timeout": "1s"},
        "interval": "1s",
        "triggers": [{"name": "load", "query": "max(load)", "threshold": 10}],
        "tiers": [{"name": "batch", "priority": 10, "selector": {"matchLabels": {"tier": "batch"}}}],
    })
    fleet = Fleet(deployment("batch-a", 3, {"tier": "batch"}))
    body = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
            "metadata": {"name": "peak", "namespace": "shop", "generation": 1}, "spec": spec.wire(), "status": {}}
    result = Evaluator(fleet, Scaler(fleet.patch)).evaluate(body, spec, Memory())
    shown = json.dumps(result.status) + json.dumps([e.message for e in result.events])
    # the control: the URL is shown (so the test looks where it would appear), without its password
    assert f"http://alice:***@127.0.0.1:{port}" in shown
    assert "MetricsUnavailable" in [e.reason for e in result.events]
    assert SECRET not in shown


def test_an_invalid_spec_message_hides_the_credentials():
    body = {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy", "metadata": {"name": "p"},
            "spec": {"prometheus": {"url": f"http://alice:{SECRET}@prom 9090"},  # a space: refused
                     "triggers": [{"name": "a", "query": "q", "threshold": 1}],
                     "tiers": [{"name": "t", "priority": 1, "selector": {"matchLabels": {"a": "b"}}}]}}
    spec, problem = read_spec(body)
    assert spec is None
    assert 'spec.prometheus.url: Invalid value: "http://alice:***@prom 9090"' in problem and SECRET not in problem


def test_a_failed_pass_describes_its_error_without_the_credentials():
    error = ValueError(f"Invalid URL 'http://alice:{SECRET}@prom:99999/api/v1/query': Failed to parse")
    assert loop.describe(error) == "ValueError: Invalid URL 'http://alice:***@prom:99999/api/v1/query': Failed to parse"


@pytest.fixture
def kopf_logging():
    """kopf's log handler on the root logger, as `hakeeper run` sets it up; taken away after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    kopf.configure(verbose=True)
    redact_logs()
    written = io.StringIO()
    for handler in root.handlers:
        if handler not in handlers and isinstance(handler, logging.StreamHandler):
            handler.setStream(written)  # kopf's, added by configure
    yield written
    root.handlers[:] = handlers
    root.setLevel(level)
    for handler in logging.getLogger("kopf.objects").handlers:
        for f in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(f)


def test_the_log_never_shows_the_credentials(kopf_logging):
    url = f"http://alice:{SECRET}@prom:9090"
    body = {"spec": {"prometheus": {"url": url}}}
    logging.getLogger("kopf.objects").debug("Update diff: %r", body)  # what kopf logs with --verbose
    logging.getLogger("hakeeper.degradationpolicy").warning("DegradationPolicy failed: %s", f"cannot reach {url}")
    try:
        raise ConnectionError(f"HTTPConnectionPool: Max retries exceeded with url: {url}/api/v1/query")
    except ConnectionError:
        logging.getLogger("hakeeper").exception("evaluation failed")
    logging.getLogger("hakeeper").info("nothing to hide at %s", "http://prom:9090")
    out = kopf_logging.getvalue()
    # the control: each line was written, with the URL in it
    assert out.count("http://alice:***@prom:9090") == 3 and "nothing to hide at http://prom:9090" in out
    assert "ConnectionError" in out  # the traceback is kept, redacted
    assert SECRET not in out


def test_kopfs_event_poster_is_filtered_too(kopf_logging):
    # kopf posts its object loggers' INFO-and-above records as Events through this handler
    posters = logging.getLogger("kopf.objects").handlers
    assert posters and all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in posters)
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "Handler failed: %s", (
        f"http://alice:{SECRET}@prom:9090",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "Handler failed: http://alice:***@prom:9090"
