"""LoadBalancerPool: balancers that follow their backend pods.

- handlers.py  kopf glue: the spec check, the indexes of EndpointSlices and pods, one loop per pool
- observe.py   the pool's backends and balancer pods, from what the watches saw (pure)
- backends.py  EndpointSlices and pods -> backends with weights and states (pure)
- objects.py   the balancer Deployment, Services, RBAC, PodDisruptionBudget (pure builders)
- status.py    the pool's conditions and counts (pure)
- reconcile.py one pass: render, apply, report
- render.py    `hakeeper render`: a manifest's balancer configuration, offline
- haproxy/, lvs/  the engines: configuration renderers (and slots, objects)
"""
