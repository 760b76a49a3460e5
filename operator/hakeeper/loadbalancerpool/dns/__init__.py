"""Engine dns: the addresses of a pool's healthy targets as DNS records, published through
ExternalDNS's DNSEndpoint (targets, records, status: pure; the pass is in reconcile.py)."""
