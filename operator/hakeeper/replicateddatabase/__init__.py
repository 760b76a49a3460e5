"""ReplicatedDatabase on Kubernetes: the objects that run the members and the controller glue."""
