"""Every `python -m softthink` command answers bad input with one line on stderr and exit status 2 (softthink/cli.py).

Each case runs the real command in a subprocess (as a user would) on input that fails before any model loads: a
missing file, a config error, a bad --set, an unknown profile, a folder that is not a run directory. The SGLang
commands (softthink.sglang_glue.launch) are tested with the plugin.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _files(tmp: Path) -> dict[str, Path]:
    files = {
        "bad_method": "generation:\n  method: magic\n",
        "bad_float": "generation:\n  cold_stop:\n    threshold: 1e-3\n",  # YAML 1.1: a string, refused
        "extra_key": "generation: {}\nmodle: tiny-random-qwen2\n",
        "not_mapping": "- a\n- b\n",
        "bad_yaml": "generation: [unclosed\n",
        "good_gen": "model: tiny-random-qwen2\nprompts: [hi]\ngeneration:\n  max_new_tokens: 4\n",
        "bad_spec": "model: tiny-random-qwen2\ndataset: no_such_dataset\n",
        "good_spec": "model: tiny-random-qwen2\ndataset: gsm8k\nend: 1\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = tmp / f"{name}.yaml"
        out[name].write_text(text)
    (tmp / "not_a_run").mkdir()
    out["not_a_run"] = tmp / "not_a_run"
    return out


CASES = {
    # command line (with {name} placeholders for the files above) -> a word the message must contain
    "generate_missing_config": ("generate --config {missing}", "does not exist"),
    "generate_bad_method": ("generate --config {bad_method}", "method"),
    "generate_yaml_float": ("generate --config {bad_float}", "cold_stop.threshold"),
    "generate_unknown_key": ("generate --config {extra_key}", "modle"),
    "generate_not_mapping": ("generate --config {not_mapping}", "mapping"),
    "generate_bad_yaml": ("generate --config {bad_yaml}", "bad_yaml"),
    "generate_bad_set": ("generate --config {good_gen} --set generation.think.max_topk", "--set"),
    "generate_set_unknown_key": ("generate --config {good_gen} --set generation.think.max_topc=3", "max_topc"),
    "generate_set_bad_value": ("generate --config {good_gen} --set generation.think.max_topk=0", "think.max_topk"),
    # one --set root for every command: a key from the generation section alone names where it belongs
    "generate_set_old_root": ("generate --config {good_gen} --set think.max_topk=3", "generation.think.max_topk"),
    "run_missing_config": ("run --config {missing}", "does not exist"),
    "run_bad_dataset": ("run --config {bad_spec}", "no_such_dataset"),
    "run_bad_set": ("run --config {good_spec} --set generation.think.max_topk", "--set"),
    "grade_missing_dir": ("grade {missing}", "not a run directory"),
    "grade_not_a_run": ("grade {not_a_run}", "not a run directory"),
    "summarize_not_a_run": ("summarize {not_a_run}", "not a run directory"),
    "reproduce_unknown_profile": ("reproduce --profile no_such_profile", "no_such_profile"),
    "run_group_unknown_group": ("run-group --profile ci --group no-such-group --build-dir {not_a_run}/b "
                                "--runs-dir {not_a_run}/r",
                                "no-such-group"),
    "report_unknown_profile": ("report --profile no_such_profile", "no_such_profile"),
    "params_expand_unknown_profile": ("params-expand --profile no_such_profile", "no_such_profile"),
    "from_official_not_a_script": ("from-official -- python demo.py --dataset aime2024", "run_sglang_softthinking.py"),
    "from_official_unknown_flag": ("from-official -- python run_sglang_softthinking.py --dataset aime2024 "
                                   "--model_name m/x --dirichlet_temperature 1.0", "--dirichlet_alpha"),
    "import_official_missing_file": ("import-official {missing}", "no such file"),
    "import_official_not_results": ("import-official {good_spec}", "not valid JSON"),
    "push_not_a_run": ("push {not_a_run} --repo-id me/x", "not a run directory"),
    "export_hf_not_a_run": ("export-hf {not_a_run} --out {not_a_run}/out", "not a run directory"),
    "model_fetch_bad_id": ("model fetch no-slash", "ORG/NAME"),
}


def _run(argv: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "SOFTTHINK_TRACEBACK"}
    full_env.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "softthink", *argv], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    files = _files(tmp_path)
    template, word = CASES[case]
    argv = [a.format(missing=tmp_path / "missing.yaml", **files) for a in template.split()]
    res = _run(argv, cwd=tmp_path, SOFTTHINK_RUNS_DIR=str(tmp_path / "runs"))
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert word in lines[0], lines[0]
    assert res.stdout == ""


def test_traceback_on_request(tmp_path):
    """SOFTTHINK_TRACEBACK=1 keeps the traceback of a user error, for debugging."""
    res = _run(["generate", "--config", str(tmp_path / "missing.yaml")], cwd=tmp_path, SOFTTHINK_TRACEBACK="1")
    assert res.returncode == 1 and "Traceback" in res.stderr and "ConfigError" in res.stderr


def test_every_command_is_covered():
    """A new command gets a bad-input case here (the SGLang ones, and commands without bad input, are listed)."""
    from softthink.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(sub.choices)
    covered = {CASES[c][0].split()[0] for c in CASES}
    # data list|fetch: no file input (fetch needs the network); figures: an empty runs folder is valid input;
    # validate-params reports INVALID profiles itself (exit 1); grade-runs reports each run's failure and goes on;
    # notebooks converts the tracked notebooks; sglang-*: softthink/sglang_glue/launch.py
    exempt = {"data", "figures", "validate-params", "grade-runs", "notebooks", "sglang-serve", "sglang-check"}
    assert commands - covered - exempt == set(), commands - covered - exempt
