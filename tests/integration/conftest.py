"""Fixtures shared by the integration tests (pytest finds them here)."""

from tests.integration.haproxy_support import lab

__all__ = ["lab"]
