"""Handlers for ReplicatedDatabase: read the spec, call the domain, write the status."""

from __future__ import annotations

from ..api import REPLICATED_DATABASE
from .spec import register_acceptance

register_acceptance(REPLICATED_DATABASE)
