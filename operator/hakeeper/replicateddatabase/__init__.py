"""ReplicatedDatabase: a MySQL/MariaDB primary with replicas and automatic failover.

- handlers.py  kopf glue: the spec check, one loop per database
- objects.py   the StatefulSet, Services, ConfigMap, Secret, PodDisruptionBudget (pure builders)
- reconcile.py one pass's Kubernetes side: objects, members, credentials, role labels, status
- clustering/  the failover loop: observe, classify, plan, act (no Kubernetes)
"""
