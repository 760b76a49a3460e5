"""The balancer sidecars, `hakeeper agent haproxy|keepalived`: another process in every balancer
pod. Each watches its pool's ConfigMap, applies it to HAProxy (runtime API, hitless reload) or
keepalived, and reports what it applied on its own pod. They import only hakeeper.api."""
