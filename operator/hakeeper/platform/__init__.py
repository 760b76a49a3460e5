"""The operator's writes to the Kubernetes API (server-side apply with one field manager)."""
