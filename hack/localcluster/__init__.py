"""A real one-node Kubernetes cluster on this machine for the e2e tier, `make demo` and `make cluster-up`."""
