"""Engine lvs: keepalived (VRRP for the virtual IP, IPVS virtual servers) on balancer nodes."""
