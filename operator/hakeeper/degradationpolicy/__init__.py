"""DegradationPolicy: shed low-priority Deployments while alerting metrics cross thresholds.

- handlers.py  kopf glue: one loop per policy (platform.loop), restore on deletion
- metrics.py   reads each trigger's PromQL through prometheus-api-client (the only user of it)
- targets.py   sorts the Deployments of the policy's namespaces into tiers (pure)
- decide.py    readings, time, memory and tiers in; what to shed or restore out (pure)
- observe.py   reads Deployments, PriorityClasses, HPAs, KEDA ScaledObjects and the policy's Secrets
- act.py       scales Deployments, remembering the original replicas in an annotation
- keda.py      which KEDA ScaledObjects to pause while their Deployment is shed, and resume (pure)
- status.py    turns a decision and its outcome into the policy's status (pure)
- cycle.py     one evaluation: observe, decide, act; what the loop runs every interval
"""
