# %% [markdown]
# # Grade — run directories → grades and summaries
#
# Runs in a fresh kernel, separate from generation; the runs are graded in one separate `python -m softthink
# grade-runs` process (`softthink.grade_runs.grade_in_process` per run: math-verify in a killable pool, code in the
# sandbox), so the grader never shares a process with an engine. Runs whose grades are newer than their samples are
# skipped unless `force`. A run that fails to grade is reported and the others
# continue; the notebook fails at the end if any did.

# %% tags=["parameters"]
run_dirs: list = []  # run directories to grade (empty: those of the manifest, else every run under runs_dir)
runs_dir: str = "runs"  # root of the run directories
manifest: str = ""  # build/<profile>/manifest.json naming the runs of a profile
sidecar: str = "build/sidecars/grade.json"  # JSON sidecar written at the end
mode: str = ""  # grader mode: suite or official (empty: each run spec decides)
force: bool = False  # regrade runs whose grades are up to date

# %%
from softthink.notebooks import notebook_params

P = notebook_params("grade", globals())
P.to_dict()

# %%
import pandas as pd

from softthink import pipeline, report, summaries

dirs = P.run_dirs or pipeline.manifest_runs(P.manifest or None, P.runs_dir)
stale = [d for d in dirs if P.force or not pipeline.grades_current(d, P.mode or None)]
print(f"{len(dirs)} runs, {len(stale)} to grade")
# one fresh grading process for all of them (never this kernel, never the generating process)
status = pipeline.grade_in_subprocess(stale, mode=P.mode or None)
status += [{"run": d, "status": "cached", "seconds": 0.0, "error": ""} for d in dirs if d not in stale]
pd.DataFrame(status)

# %%
graded = pipeline.graded_runs(dirs)
summary = summaries.summarize_runs(graded) if graded else pd.DataFrame()
cols = [c for c in summaries.TABLE_COLUMNS + ["dataset", "method"] if c in summary.columns]
summary[cols] if len(summary) else "no graded runs"

# %%
failed = [s for s in status if s["status"] == "failed"]
metrics = {"graded": sum(s["status"] == "ok" for s in status), "cached": sum(s["status"] == "cached" for s in status),
           "failed": failed,
           "pass@1": {r["run"]: r["pass@1"] for r in summary.to_dict("records")} if "pass@1" in summary else {}}
report.write_sidecar(P.sidecar, "grade", P, metrics=metrics, inputs=dirs)
if failed:
    raise RuntimeError(f"{len(failed)} run(s) failed to grade: " + "; ".join(f"{f['run']}: {f['error']}" for f in failed))
metrics
