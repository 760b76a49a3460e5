"""hakeeper: a Kubernetes operator that keeps services highly available."""
