"""The local node's pod network namespaces survive another process's `ip netns add` (CI found one
left behind: `cni-…`, "Device or resource busy"). Each case runs in a private mount namespace
of its own (unshare -m) with a tmpfs on /run, so the machine's /run/netns is not touched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

# what containerd does for a pod (a namespace file bind-mounted under /run/netns), then another
# process's first `ip netns add`, then containerd's teardown of the pod (unmount, remove the file)
SCENARIO = textwrap.dedent("""\
    set -e
    mount -t tmpfs tmpfs /run && mkdir /run/netns
    {prepare}
    touch /run/netns/cni-test; mount --bind /proc/self/ns/net /run/netns/cni-test
    ip netns add hk-other
    umount /run/netns/cni-test; rm /run/netns/cni-test 2>/dev/null || true
    echo "left: $(grep -c cni-test /proc/self/mountinfo || true)"
    """)
PREPARE = f"{sys.executable} -c 'import sys; sys.path.insert(0, \"hack\"); " \
          "from localcluster.network import mount_netns_dir; mount_netns_dir()'"


def _left(prepare: str) -> str:
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c",
                          SCENARIO.format(prepare=prepare)], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def test_a_pod_namespace_goes_with_its_pod_when_the_node_mounted_the_netns_directory_first() -> None:
    assert _left(PREPARE) == "left: 0"


def test_without_it_another_process_s_ip_netns_add_hides_the_pod_namespace() -> None:
    # the negative control: the fault CI met
    assert _left(":") == "left: 1"
