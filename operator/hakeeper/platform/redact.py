"""Credentials written into URLs (`http://user:secret@prom:9090`) kept out of what people read:
status, Events and logs.

RFC 3986 §3.2.1 deprecates "user:password" in a URL's userinfo because it ends up shown in
clear wherever the URL is; a DegradationPolicy's `prometheus.url` may still carry one (requests
turns it into Basic authentication). Everything that shows such a URL shows it through
redact_url, and free text that may quote one (an error message, a log line) goes through
scrub. The log filter does the same for every record the operator writes or posts as an Event
(kopf's debug lines print whole objects, spec included).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable

HIDDEN = "***"

# scheme://userinfo@ : userinfo runs to the last "@" before the path, query or fragment
# (a password with a raw "@" is a malformed URL, but people write them, and urllib splits at the last)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>]*)@")
# a secret shorter than this is not replaced as bare text: "***" for every "ab" would garble messages,
# and the URL forms (which carry it) are redacted by shape anyway
MIN_SECRET = 4


def _hide(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # a user alone may be a token (http://TOKEN@host): hide it whole
    shown = f"{user}:{HIDDEN}" if colon and user else HIDDEN
    return f"{match['scheme']}{shown}@"


def redact_url(url: str) -> str:
    """The URL with its password hidden (`http://user:***@prom:9090`), or its whole userinfo when it
    has no password (`http://***@prom:9090`); a URL without userinfo comes back unchanged."""
    return _USERINFO.sub(_hide, url)


def secrets_of(url: str) -> tuple[str, ...]:
    """The credentials a URL carries, as written and percent-decoded (what requests sends); () for none."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[": the regex in scrub still hides the userinfo
        return ()
    userinfo, at, _ = parts.netloc.rpartition("@")
    if not at:
        return ()
    user, colon, password = userinfo.partition(":")
    secret = password if colon else user
    return tuple({secret, urllib.parse.unquote(secret)} - {""})


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text with every URL's userinfo redacted (redact_url) and each of `secrets` (of at least
    MIN_SECRET characters) replaced by ***, wherever it appears."""
    text = _USERINFO.sub(_hide, text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, HIDDEN)
    return text


class RedactingFilter(logging.Filter):
    """A handler's filter that redacts URL credentials in each record's message and traceback.

    The record is rewritten only when something is hidden, so other records keep their
    arguments and exc_info for the formatter (kopf's JSON format puts exc_info in a field of its own).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        trace = None
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            if scrub(trace) == trace:
                trace = None
        if clean == message and trace is None:
            return True
        record.msg, record.args = clean, ()
        if trace is not None:  # the traceback quotes the URL: it goes, redacted, into the message
            record.msg = f"{clean}\n{scrub(trace)}"
            record.exc_info, record.exc_text = None, None
        return True


def redact_logs(loggers: Iterable[str] = ("", "kopf.objects")) -> None:
    """Adds RedactingFilter to every handler of these loggers (the root's print the log; kopf.objects'
    K8sPoster posts INFO and above as Events). Call after kopf.configure, which replaces the root's."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
