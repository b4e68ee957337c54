"""Stand-in for `python -m softthink run-group`: generate every run of a group in this one process (resumable;
exit 0 when all are complete)."""
import argparse
import sys

from softthink.generate import generate_run
from softthink.runspec import RunSpec
from softthink.store import expected_samples, read_jsonl

p = argparse.ArgumentParser()
p.add_argument("--runs-dir", required=True)
p.add_argument("specs", nargs="+")
args = p.parse_args()
bad = 0
for spec_file in args.specs:
    rd = generate_run(RunSpec.from_yaml(spec_file), progress=False, runs_dir=args.runs_dir)
    n = len(read_jsonl(rd.samples_path))
    print(f"[standin] {spec_file}: {n}/{expected_samples(rd)} samples in {rd.path}", flush=True)
    bad += n != expected_samples(rd)
sys.exit(1 if bad else 0)
