"""kopf handlers; importing this package registers them."""

from . import degradationpolicy, loadbalancerpool, replicateddatabase, settings  # noqa: F401
