"""One VM per pytest session for the lvs tier: the scenarios of the selected tests run in it,
and each test judges what its scenario measured (see vm.py, scenarios.py, guest.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import pytest

from . import scenarios, vm

BOOT_BUDGET = 120.0
"""Seconds for the boot, the network and the real servers under software emulation (~15 s seen)."""
SCENARIO_BUDGET = 90.0
"""Seconds per scenario before qemu is killed (each polls with its own deadlines well within it)."""


@dataclasses.dataclass
class Results:
    run: vm.Run
    by_name: dict[str, dict[str, Any]]

    def __call__(self, name: str) -> dict[str, Any]:
        """What scenario `name` measured; fails the test when it did not run to its end."""
        found = self.by_name.get(name)
        if found is None:
            pytest.fail(f"scenario {name} reported nothing (VM exit {self.run.exit_code}, {self.run.seconds:.0f}s); "
                        f"console tail:\n{self.run.console[-6000:]}")
        if not found["ok"]:
            pytest.fail(f"scenario {name} failed in the VM:\n{found['error']}\nkeepalived logs:\n"
                        + json.dumps(found.get("logs", {}), indent=1))
        return found


@pytest.fixture(scope="session")
def lvs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Boots the VM once with the scenarios every selected test names, and returns their results."""
    if os.geteuid() != 0:
        pytest.fail("the lvs tier needs root (network namespaces in the VM, and qemu's 9p share of /)")
    if shutil.which(vm.QEMU) is None:
        pytest.fail(f"{vm.QEMU} is not installed (Debian package qemu-system-x86; `make debs`)")
    wanted = {name for item in request.session.items for marker in item.iter_markers("lvs") for name in marker.args}
    catalog = scenarios.catalog()
    unknown = wanted - catalog.keys()
    assert not unknown, f"tests name scenarios that do not exist: {sorted(unknown)}"
    chosen = [scenario for name, scenario in catalog.items() if name in wanted]
    image = vm.ensure_image()
    job = scenarios.job(tmp_path_factory.mktemp("lvs-job"), image, chosen)
    run = vm.run_job(image, job, deadline=BOOT_BUDGET + SCENARIO_BUDGET * len(chosen))
    (job / "console.log").write_text(run.console)
    return Results(run, scenarios.results(run))
