"""The Kubernetes client the controllers' act steps use."""

from __future__ import annotations

from kubernetes import client, config


def api_client(pool_size: int = 8) -> client.ApiClient:
    """From the pod's ServiceAccount, or else $KUBECONFIG / ~/.kube/config.

    Each call makes its own configuration (not the library's global default), so a caller
    can size the connection pool for the threads that share it.
    """
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)
