"""Engine-independent parts of a LoadBalancerPool: which backends exist, and the objects that run the balancers."""
