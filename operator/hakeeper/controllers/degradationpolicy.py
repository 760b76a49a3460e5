"""Handlers for DegradationPolicy: read the spec, call the domain, write the status."""

from __future__ import annotations

from ..api import DEGRADATION_POLICY
from .spec import register_acceptance

register_acceptance(DEGRADATION_POLICY)
