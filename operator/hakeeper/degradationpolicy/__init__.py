"""Load shedding by priority: the domain of DegradationPolicy, with no kopf in it.

- metrics.py  reads each trigger's PromQL through prometheus-api-client (value, no data, unavailable)
- targets.py  sorts the Deployments of the policy's namespaces into tiers (pure)
- state.py    decides: readings, time, memory and tiers in; what to shed or restore out (pure)
- cluster.py  reads Deployments, PriorityClasses, HPAs and the policy's Secrets
- act.py      scales Deployments, remembering the original replicas in an annotation
- status.py   turns a decision and its outcome into the policy's status (pure)
- cycle.py    one evaluation: read, decide, act; what the controller runs every interval
"""
