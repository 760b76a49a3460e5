"""HAProxy balancers: the configuration (config, slots), the runtime API (runtime) and the agent sidecar (agent)."""
