"""The one-node Slurm cluster of the Slurm tests (make test-slurm; skipped otherwise).

`make test-slurm` starts it with `tests/slurm/cluster.sh run -- pytest tests/slurm` (stopped by the script's trap);
run alone (`SOFTTHINK_TEST_SLURM=1 pytest tests/slurm`), this fixture starts one and stops it in its finalizer."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parent / "cluster.sh"


@pytest.fixture(scope="session")
def slurm_cluster(request):
    if os.environ.get("SOFTTHINK_TEST_SLURM") != "1":
        pytest.skip("needs a one-node Slurm cluster: make test-slurm (or SOFTTHINK_TEST_SLURM=1 as root)")
    if os.environ.get("SOFTTHINK_SLURM_CLUSTER") and os.environ.get("SLURM_CONF"):
        return os.environ["SOFTTHINK_SLURM_CLUSTER"]  # cluster.sh run started it and stops it
    d = tempfile.mkdtemp(prefix="softthink-slurm.", dir="/tmp")
    saved = os.environ.get("SLURM_CONF")

    def stop():
        subprocess.run([str(CLUSTER), "stop", d], check=False)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved

    request.addfinalizer(stop)
    subprocess.run([str(CLUSTER), "start", d], check=True)
    os.environ["SLURM_CONF"] = f"{d}/slurm.conf"
    return d
