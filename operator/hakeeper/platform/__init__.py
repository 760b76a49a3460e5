"""The Kubernetes side every kind shares, and the only operator code that talks to the API:

- kube.py      one client: get, list, create, patch, status patch, server-side apply, delete
- loop.py      one loop per object: coalesced wake-ups, intervals, status writes skipped when
               unchanged, Ready=False and one Warning per distinct error
- spec.py      a spec read through its model; Ready=False/InvalidSpec when it fails
- settings.py  kopf's settings (annotations for its state, the finalizer)
"""
