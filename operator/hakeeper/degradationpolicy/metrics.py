"""Trigger readings from Prometheus, through prometheus-api-client.

Three outcomes, never confused:
- a value: the query returned exactly one sample with a number;
- no data: an empty result, NaN, +Inf or -Inf. Prometheus itself drops a series from instant
  queries once it is stale (a staleness marker when the series disappears from its target or
  the target goes away, or after the 5-minute lookback): a stale series is no data, never zero.
  An infinity is what a division by a zero rate gives (errors/requests with no requests at
  all): no measurement, not an infinitely bad one, so it never sheds;
- unavailable: Prometheus cannot be reached, answers an error, answers with `warnings` (the
  answer may be partial: a remote-read or, behind Thanos, a store that failed), or the query is
  not a single instant sample (a range vector, several series: the message says which).

Every query asks `partial_response=false`: Thanos then answers an error rather than what the
stores that did answer had (Thanos' query API, "Partial Response"); Prometheus ignores the
parameter. The URL may carry credentials (`http://user:secret@...`): no message shows them.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from hakeeper.api.degradationpolicy import Trigger
from hakeeper.degradationpolicy.decide import Reading
from hakeeper.platform.redact import redact_url, scrub, secrets_of


def reading_from_answer(answer: Mapping[str, Any]) -> Reading:
    """Classifies a whole answer of GET /api/v1/query (Prometheus HTTP API, "Format overview":
    {"status": "success" | "error", "data": {"resultType", "result"}, "warnings": [str],
    "infos": [str], "errorType", "error"}).

    `warnings` say the answer may be incomplete (a secondary storage, such as a remote-read
    endpoint or a Thanos store, failed) or wrong (PromQL's warning annotations): unavailable,
    never a good reading. `infos` are notes on the query (PromQL's info annotations, e.g. "metric
    might not be a counter") and change nothing.
    """
    if answer.get("status") != "success":
        return Reading("unavailable", message=f"Prometheus answered {answer.get('errorType') or 'an error'}: "
                                              f"{str(answer.get('error') or answer)[:200]}")
    warned = answer.get("warnings") or []
    if warned:
        shown = "; ".join(str(w) for w in warned)
        return Reading("unavailable", message="Prometheus answered with warnings, so the answer may be partial: "
                                              + (shown if len(shown) <= 300 else shown[:300] + "..."))
    data = answer.get("data")
    if not isinstance(data, Mapping) or "result" not in data:
        return Reading("unavailable", message=f"not a query answer (no data.result): {str(answer)[:200]}")
    return reading_from_result(data["result"])


def reading_from_result(result: Any) -> Reading:
    """Classifies what custom_query returned (the `data.result` of the query API).

    The shapes (Prometheus HTTP API, "Expression query result formats"): a scalar or string is
    `[<unix time>, "<value>"]`; an instant vector a list of `{"metric": {labels}, "value":
    [<unix time>, "<value>"]}` (a native histogram has `"histogram"` in place of `"value"`); a
    range vector a list of `{"metric", "values": [[<unix time>, "<value>"], ...]}`. Anything
    else (a series that is no object, no `value`, a `value` that is no pair) is unavailable with
    a message saying what was wrong: never an exception, which would fail the whole evaluation.
    """
    if not isinstance(result, list):
        return Reading("unavailable", message=f"unexpected answer: {str(result)[:200]}")
    if not result:
        return Reading("no-data", message="the query returned no series (none exist, or they went stale)")
    if len(result) == 2 and _is_time(result[0]):
        return _number(result[1])  # a scalar: [time, "value"]
    malformed = next((i for i, series in enumerate(result) if not isinstance(series, Mapping)), None)
    if malformed is not None:
        return Reading("unavailable", message=f"unexpected answer: series {malformed} is not an object "
                                              f"with metric and value: {str(result[malformed])[:100]}")
    if any("values" in series for series in result):
        return Reading("unavailable", message="the query returns a range vector; wrap it in e.g. max_over_time()")
    if len(result) > 1:
        shown = ", ".join(_labels(series.get("metric")) for series in result[:3])
        return Reading("unavailable",
                       message=f"the query returns {len(result)} series ({shown}...); wrap it in max() or sum()")
    series = result[0]
    if "value" not in series and "histogram" in series:
        return Reading("unavailable", message="the query returns a native histogram, not a number; "
                                              "wrap it in e.g. histogram_quantile() or histogram_count()")
    sample = series.get("value")
    if not isinstance(sample, list) or len(sample) != 2:
        what = "no value" if "value" not in series else f"a value that is not [time, number]: {str(sample)[:100]}"
        return Reading("unavailable", message=f"unexpected answer: the series has {what}")
    return _number(sample[1])


def _is_time(item: Any) -> bool:
    """A sample's time: a JSON number of seconds (Prometheus writes it unquoted)."""
    return isinstance(item, (int, float)) and not isinstance(item, bool)


def _number(text: Any) -> Reading:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return Reading("unavailable", message=f"not a number: {str(text)[:100]}")
    if math.isnan(value):
        return Reading("no-data", message="the query returned NaN")
    if math.isinf(value):
        # Prometheus writes infinities as "+Inf"/"-Inf" (HTTP API, "Expression query result
        # formats"); a ratio over an idle denominator gives one, and it means nothing measured
        return Reading("no-data", message=f"the query returned {'+Inf' if value > 0 else '-Inf'}")
    return Reading("value", value=value)


def _labels(metric: Any) -> str:
    if not isinstance(metric, Mapping):
        return "{}" if metric is None else "{?}"  # a series without labels, or labels that are no object
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(metric.items(), key=lambda kv: str(kv[0]))) + "}"


class PrometheusSource:
    """One Prometheus, queried with the policy's timeout, bearer token and CA."""

    def __init__(self, url: str, timeout: float, *, bearer_token: str | None = None, ca_pem: str | None = None,
                 insecure_skip_verify: bool = False) -> None:
        self.url = url.rstrip("/")
        self.shown_url = redact_url(self.url)
        """The URL as messages show it: credentials in it hidden (platform.redact)."""
        self._secrets = secrets_of(self.url)
        self.timeout = timeout
        session = requests.Session()
        session.verify = _ca_file(ca_pem) if ca_pem else not insecure_skip_verify
        # The environment's proxy for this URL (HTTPS_PROXY, NO_PROXY...), read once: with
        # trust_env requests reads the whole environment and looks for ~/.netrc at every request,
        # a third of a query's CPU (bench/scale). So also no REQUESTS_CA_BUNDLE: the CA is
        # prometheus.caSecret's.
        session.proxies = requests.utils.get_environ_proxies(self.url)
        session.trust_env = False
        if insecure_skip_verify and not ca_pem:
            # the policy asked for it and its spec says so; a warning per query would flood the log
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        # custom_query returns data.result only; the warnings beside it are read from the
        # response itself, kept per thread by this hook (it runs in the thread that queries)
        self._last = threading.local()
        session.hooks["response"].append(self._keep)
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else None
        # No retries inside a query: the next evaluation is the retry, and an evaluation must
        # not outlast its timeout because urllib3 backs off between attempts.
        self.client = PrometheusConnect(url=self.url, headers=headers, session=session,
                                        retry=Retry(total=0, raise_on_status=False), timeout=timeout)
        self.config = (url, timeout, bearer_token, ca_pem, insecure_skip_verify)

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.response = response

    def params(self) -> dict[str, str]:
        """The query parameters besides the query (Prometheus HTTP API, "Instant queries").

        timeout: Prometheus' own evaluation timeout keeps a heavy query from running on after we
          gave up. partial_response=false: Thanos fails the query when a store fails, instead of
          answering with what the others had (Prometheus ignores an unknown parameter).
        """
        return {"timeout": f"{self.timeout:g}s", "partial_response": "false"}

    def read(self, query: str) -> Reading:
        reading = self._read(query)
        if reading.message:  # an error may quote the URL, credentials and all
            reading = Reading(reading.outcome, reading.value, scrub(reading.message, self._secrets))
        return reading

    def _read(self, query: str) -> Reading:
        self._last.response = None
        try:
            result = self.client.custom_query(query, params=self.params())
        except PrometheusApiClientException as error:
            return Reading("unavailable", message=f"Prometheus refused the query: {_short(error)}")
        except requests.exceptions.Timeout:
            return Reading("unavailable", message=f"Prometheus did not answer within {self.timeout:g}s")
        except requests.exceptions.JSONDecodeError as error:  # a RequestException too: told apart first
            return Reading("unavailable", message=f"Prometheus answered something else than JSON: {_short(error)}")
        except requests.exceptions.RequestException as error:
            return Reading("unavailable", message=f"cannot reach Prometheus at {self.shown_url}: {_cause(error)}")
        except ValueError as error:  # not JSON
            return Reading("unavailable", message=f"Prometheus answered something else than JSON: {_short(error)}")
        except (KeyError, TypeError):  # JSON, but without data.result
            return Reading("unavailable", message=f"{self.shown_url} answered JSON that is no query answer")
        response = getattr(self._last, "response", None)
        answer = response.json() if response is not None else None
        if not isinstance(answer, Mapping):
            return reading_from_result(result)
        return reading_from_answer(answer)

    def read_all(self, triggers: Iterable[Trigger]) -> dict[str, Reading]:
        return {t.name: self.read(t.query) for t in triggers}

    def close(self) -> None:
        self.client.close()


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 300 else text[:300] + "..."


def _cause(error: Exception) -> str:
    """The innermost reason of a connection error ("Connection refused"), not urllib3's whole story."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    return found[-1].strip() if found else _short(error)


def _ca_file(pem: str) -> str:
    """requests wants a path; the CA bundle goes to a file named by its content."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"hakeeper-prometheus-ca-{digest}.pem")
    if not os.path.exists(path):
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False) as out:
            out.write(pem)
        os.replace(out.name, path)
    return path
