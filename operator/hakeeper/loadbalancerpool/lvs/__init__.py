"""Engine lvs: keepalived.conf (VRRP for the virtual IP, IPVS virtual servers) rendered from a
pool (config), and the keepalived DaemonSet that runs it on balancer nodes (objects)."""
