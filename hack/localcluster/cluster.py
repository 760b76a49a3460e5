"""A control plane, the node agent and the service proxy: what `make cluster-up` and the e2e fixture start."""

from __future__ import annotations

import pathlib

from . import addresses
from .api import Api
from .controlplane import ControlPlane
from .nodeagent import NodeAgent
from .serviceproxy import ServiceProxy


class LocalCluster:
    def __init__(self, state_dir: pathlib.Path, bin_dir: pathlib.Path, *, nodes: int = 1):
        self.state_dir = pathlib.Path(state_dir).resolve()
        self.control_plane = ControlPlane(self.state_dir, bin_dir)
        self.node_names = ("hakeeper-local",) if nodes == 1 else tuple(f"hakeeper-local-{i}" for i in range(nodes))
        self.agent: NodeAgent | None = None
        self.proxy: ServiceProxy | None = None
        self.startup_seconds = 0.0
        self.networks = (addresses.POD_CIDR, self.control_plane.service_network)

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.control_plane.kubeconfig

    def start(self) -> None:
        try:
            self.control_plane.start()
            for network in self.networks:
                addresses.fence(network)
            pki = self.state_dir / "pki"
            api = Api(self.control_plane.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
            self.agent = NodeAgent(api, self.state_dir / "pods", nodes=self.node_names,
                                   api_port=self.control_plane.api_port)
            self.agent.start()
            self.proxy = ServiceProxy(api)
            self.proxy.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # each part stops even when the one before it failed to: nothing may be left running
        try:
            if self.proxy is not None:
                self.proxy.stop()  # before the pods it forwards to go away
                self.proxy = None
        finally:
            try:
                if self.agent is not None:
                    self.agent.stop()
                    self.agent = None
            finally:
                self.control_plane.stop()
                for network in self.networks:
                    addresses.unfence(network)
