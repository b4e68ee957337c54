# %% [markdown]
# # Sweep analysis — Soft Thinking hyperparameters
#
# Heat maps of pass@1 over `max_topk` × Cold Stop entropy threshold τ per dataset, and pass@1 against the Cold Stop
# length L and min-p, from the runs of the `sweep` profile. Cached results only. Logic: `softthink.figures`.

# %% tags=["parameters"]
runs_dir: str = "runs"  # root of the run directories
manifest: str = "build/sweep/manifest.json"  # the sweep profile's manifest (empty: every run under runs_dir)
out_dir: str = "figures"  # where sweep_heatmaps.{png,pdf} and sweep.csv go
sidecar: str = "build/sidecars/sweep_analysis.json"  # JSON sidecar written at the end
grader: str = "suite"  # grader mode used

# %%
from softthink.notebooks import notebook_params

P = notebook_params("sweep_analysis", globals())
P.to_dict()

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from softthink import figures, pipeline, report, summaries

dirs = pipeline.graded_runs(pipeline.manifest_runs(P.manifest or None, P.runs_dir))
summary = summaries.summarize_runs(dirs) if dirs else pd.DataFrame()
if len(summary) and "grader" in summary:
    summary = summary[summary["grader"].astype(str).str.endswith(P.grader)]
sweep = summary[summary["method"] == "soft"] if len(summary) else summary
print(f"{len(sweep)} soft-thinking runs")
keys = [k for k in figures.SWEEP_KEYS.values() if k in sweep.columns]
if len(sweep):
    display(sweep[["dataset", *keys, "pass@1", "len_all"]].sort_values(["dataset", *keys]))

# %%
fig = figures.sweep_heatmaps(sweep)
outputs = figures.save_figure(fig, "sweep_heatmaps", P.out_dir)
os.makedirs(P.out_dir, exist_ok=True)
if len(sweep):
    sweep[["dataset", *keys, "pass@1", "len_all", "len_correct"]].rename(columns=summaries.SETTING_LABELS).to_csv(
        f"{P.out_dir}/sweep.csv", index=False)
    outputs.append(f"{P.out_dir}/sweep.csv")
plt.show()

# %%
best = (sweep.sort_values("pass@1", ascending=False).groupby("dataset").head(1)[["dataset", *keys, "pass@1"]]
        .to_dict("records") if len(sweep) else [])
report.write_sidecar(P.sidecar, "sweep_analysis", P, metrics={"runs": len(sweep), "best": best}, inputs=dirs,
                     outputs=outputs)
best
