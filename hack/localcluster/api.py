"""A small JSON client for the API server, safe to share between threads."""

from __future__ import annotations

import pathlib
import threading
from typing import Any

import requests


class ApiError(RuntimeError):
    def __init__(self, status: int, text: str):
        super().__init__(f"{status}: {text[:500]}")
        self.status = status


class Api:
    def __init__(self, server: str, ca: pathlib.Path, cert: pathlib.Path, key: pathlib.Path):
        self.server = server
        self._tls = {"verify": str(ca), "cert": (str(cert), str(key))}
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA, a proxy would not reach 127.0.0.1
            session.verify = self._tls["verify"]
            session.cert = self._tls["cert"]
            self._local.session = session
        return session

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                params: dict | None = None, ok_missing: bool = False) -> Any:
        response = self._session().request(
            method, self.server + path, json=body, params=params, timeout=30,
            headers={"Content-Type": content_type, "Accept": "application/json"})
        if ok_missing and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.text)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def get_or_none(self, path: str) -> Any:
        return self.request("GET", path, ok_missing=True)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Any = None) -> Any:
        return self.request("DELETE", path, body, ok_missing=True)
