"""`hakeeper uninstall`: what the chart's pre-delete hook runs before `helm uninstall` deletes
anything, so that nothing hakeeper did outlives it: the operator stopped first, every
Deployment a DegradationPolicy shed put back, and hakeeper's finalizer taken off every object
of its three kinds (plan: what to do, pure; act: doing it through platform.kube)."""
