"""The balancer ConfigMaps: the contract between the operator, which renders them, and the
agents, which turn them into the files HAProxy and keepalived load. Both sides import
this package and nothing of each other."""
