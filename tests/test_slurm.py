"""The Slurm executor without a cluster: the profile's `slurm` section, the reproduce flags, the per-node SGLang
launch of a multi-node group, the job command on every node. (tests/slurm/ runs it against a real Slurm.)"""
from __future__ import annotations

import argparse
import os
import sys
import time

import pytest

from softthink.config import ConfigError
from softthink.slurm_config import add_slurm_flags, options_from_args, slurm_options, time_minutes


@pytest.mark.parametrize("value,minutes", [("90", 90), (90, 90), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440),
                                           ("1-02:30", 1590), ("1-00:00:30", 1441)])
def test_time_formats(value, minutes):
    assert time_minutes(value) == minutes


def test_section_and_flags():
    opts = slurm_options({"partition": "gpu", "account": "proj", "qos": "high", "time": "12:00:00",
                          "cpus_per_task": 16, "mem": "0", "setup": ["module load cuda"],
                          "extra": ["#SBATCH --constraint=h100", "--exclusive"]},
                         partition="gpu-long", time=None, extra=["--comment soft thinking"])
    assert (opts.partition, opts.account, opts.qos, opts.minutes, opts.cpus_per_task, opts.mem) == \
        ("gpu-long", "proj", "high", 720, 16, "0")
    assert opts.extra == {"constraint": "h100", "exclusive": True, "comment": "soft thinking"}
    assert opts.setup == ["module load cuda"]

    p = argparse.ArgumentParser()
    add_slurm_flags(p)
    args = p.parse_args(["--executor", "slurm", "--no-wait", "--slurm-qos", "low", "--slurm-extra=--constraint=a100"])
    got = options_from_args(args, {"partition": "gpu"})
    assert (got.partition, got.qos, got.extra, args.no_wait) == ("gpu", "low", {"constraint": "a100"}, True)
    assert options_from_args(p.parse_args([]), {"partition": "gpu"}) is None


@pytest.mark.parametrize("section,key", [
    ({"partitions": "gpu"}, "slurm.partitions"), ({"time": "soon"}, "slurm.time"), ({"time": "0"}, "slurm.time"),
    ({"partition": "gpu; rm -rf"}, "slurm.partition"), ({"cpus_per_task": 0}, "slurm.cpus_per_task"),
    ({"mem": "lots"}, "slurm.mem"), ({"extra": ["-C h100"]}, "slurm.extra"),
    ({"extra": ["--nodes=4"]}, "--nodes"), ({"extra": ["--comment=$(id)"]}, "slurm.extra"),
    ({"setup": "module load x"}, "slurm.setup")])
def test_bad_section_names_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        slurm_options(section)


def test_profile_validation_reports_the_slurm_section(tmp_path):
    from softthink.profiles import load_profile, validate_profile

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "_profile.yaml").write_text("slurm: {partition: gpu, time: never}\n")
    (tmp_path / "p" / "one.yaml").write_text("model: tiny-random-qwen2\ndataset: gsm8k\nlimit: 1\n")
    problems = validate_profile(load_profile("p", tmp_path))
    assert any("slurm.time" in p for p in problems), problems


def _launch_options(**kw):
    from softthink.sglang_glue.launch import LaunchOptions

    return LaunchOptions(model_path="/models/llama-70b", tp_size=16, nnodes=2, kmax=15, port=31000, **kw)


def test_node_launch_two_nodes():
    from softthink.slurm import node_launch

    env = {"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}
    seen = []

    def hostnames(nodelist):
        seen.append(nodelist)
        return ["gpu07", "gpu08"]

    cmds = {}
    for rank in (0, 1):
        cmd, node_env = node_launch(_launch_options(), {**env, "SLURM_NODEID": str(rank)}, hostnames=hostnames)
        cmds[rank] = cmd
        flag = lambda name: cmd[cmd.index(name) + 1]  # noqa: E731
        assert cmd[:3] == [sys.executable, "-m", "sglang.launch_server"]
        assert (flag("--nnodes"), flag("--node-rank"), flag("--dist-init-addr")) == ("2", str(rank), "gpu07:29956")
        assert (flag("--tp-size"), flag("--port")) == ("16", "31000")
        assert flag("--host") == ("127.0.0.1" if rank == 0 else "0.0.0.0")
        # the plugin's environment, the same on every node (docs/sglang.md)
        assert node_env["SGLANG_EXTERNAL_MODEL_PACKAGE"] == "softthink.sglang_glue.models"
        assert node_env["SOFTTHINK_SGLANG_KMAX"] == "15" and node_env["SOFTTHINK_SGLANG_MIX_DTYPE"] == "model"
    assert seen == ["gpu[07-08]", "gpu[07-08]"]
    drop = lambda c: [x for i, x in enumerate(c) if x not in ("0", "1", "127.0.0.1", "0.0.0.0")]  # noqa: E731
    assert drop(cmds[0]) == drop(cmds[1])  # only the rank and the HTTP host differ


def test_node_launch_checks_the_allocation_and_honours_an_address():
    from softthink.slurm import node_launch

    with pytest.raises(ConfigError, match="2 nodes but the Slurm job has 1"):
        node_launch(_launch_options(), {"SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0"})
    cmd, _ = node_launch(_launch_options(), {"SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1",
                                             "SOFTTHINK_DIST_INIT_ADDR": "10.0.0.7:5000"},
                         hostnames=lambda _: pytest.fail("no lookup when the address is given"))
    assert cmd[cmd.index("--dist-init-addr") + 1] == "10.0.0.7:5000"
    from softthink.sglang_glue.launch import LaunchOptions  # one node: nothing multi-node in the command

    cmd, _ = node_launch(LaunchOptions(model_path="m", tp_size=8), {"SLURM_JOB_NUM_NODES": "1"})
    assert "--nnodes" not in cmd and "--dist-init-addr" not in cmd


def test_group_job_on_a_second_node_ends_when_rank0_is_done(tmp_path, monkeypatch):
    """The job runs the group command on every node; a non-zero node's command (its SGLang server) is ended once
    rank 0's command has ended; rank 0's status is the job's."""
    from softthink.slurm import GroupJob

    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    job = GroupJob([sys.executable, "-c", "import time; time.sleep(60)"], str(tmp_path), {}, str(tmp_path))
    monkeypatch.setenv("SLURM_NODEID", "1")
    import threading

    threading.Timer(1.0, lambda: (tmp_path / "77-0.rank0-done").touch()).start()
    t0 = time.time()
    assert job() == 0 and time.time() - t0 < 20

    monkeypatch.setenv("SLURM_NODEID", "0")
    ok = GroupJob([sys.executable, "-c", "import os; print(os.environ['X'])"], str(tmp_path), {"X": "1"}, str(tmp_path))
    (tmp_path / "77-0.rank0-done").unlink()
    assert ok() == 0 and (tmp_path / "77-0.rank0-done").exists()
    bad = GroupJob([sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path), {}, str(tmp_path))
    with pytest.raises(RuntimeError, match="exited with status 3"):
        bad()


def test_ledger_follows_without_submitting_twice(tmp_path, monkeypatch):
    """A group whose job Slurm still has is followed, not submitted again; an ended one is submitted anew."""
    from softthink import slurm
    from softthink.slurm_config import SlurmOptions

    class G:
        def __init__(self, key):
            self.key, self.engine, self.model, self.gpus, self.nnodes, self.experiments = key, "hf", "m", 0, 1, [key]

    states = {"11": "RUNNING"}
    submitted = []

    def fake_submit(group, argv, opts, state_dir):
        jid = str(20 + len(submitted))
        submitted.append((group.key, argv))
        states[jid] = "PENDING"
        entry = {"group": group.key, "experiments": group.experiments, "job_id": jid, "log": f"{jid}.log",
                 "result": str(tmp_path / f"{jid}.pkl"), "requeues": 0, "state": None, "history": []}
        slurm._set_state(entry, "pending")
        return entry

    monkeypatch.setattr(slurm, "check_slurm", lambda: None)
    monkeypatch.setattr(slurm, "submit_group", fake_submit)
    monkeypatch.setattr(slurm, "job_info", lambda jid: {"JobState": states[jid], "Restarts": "0"}
                        if jid in states else None)
    slurm._write_ledger(tmp_path, {"jobs": {"a": {"group": "a", "experiments": ["a"], "job_id": "11", "log": "l",
                                                  "result": str(tmp_path / "11.pkl"), "state": "pending",
                                                  "history": []},
                                            "b": {"group": "b", "experiments": ["b"], "job_id": "12", "log": "l",
                                                  "result": str(tmp_path / "12.pkl"), "state": "running",
                                                  "history": []}}})
    out = slurm.run_groups_slurm([G("a"), G("b")], lambda g: ["cmd", g.key], SlurmOptions(), tmp_path, wait=False,
                                 say=lambda m: None)
    assert [(r["group"], r["job_id"], r["state"], r["submitted"]) for r in out] == \
        [("a", "11", "running", False), ("b", "20", "pending", True)]
    assert submitted == [("b", ["cmd", "b"])]
    assert slurm.read_ledger(tmp_path)["jobs"]["b"]["previous"][0]["job_id"] == "12"
    assert "without a result" in slurm.read_ledger(tmp_path)["jobs"]["b"]["previous"][0]["error"]
