# %% [markdown]
# # Diagnostics — is Soft Thinking more than greedy decoding?
#
# Three measures (docs/diagnostics.md): **trajectory agreement** of every soft-input sample with the greedy CoT sample
# of the same item (from cached runs, no model), the **top-1 reliance probe** (replays the first items of the soft
# runs with the model and compares the next-step distribution under the concept token with the one-hot top-1 and
# top-2 inputs; cached in each run's `probe/` folder), and **paired differences** to greedy CoT on the same items.
# On the demo's 135M model the numbers exercise the machinery only. Logic: `softthink.diagnostics`, `softthink.probe`.

# %% tags=["parameters"]
runs_dir: str = "runs"  # root of the run directories
manifest: str = ""  # build/<profile>/manifest.json restricting the runs (empty: every run under runs_dir)
out_dir: str = "figures"  # where diagnostics.md, the CSV files and the figures go
sidecar: str = "build/sidecars/diagnostics.json"  # JSON sidecar written at the end
grader: str = "suite"  # grader mode whose grades are read
probe_items: int = 2  # the probe replays sample 0 of this many items per run (0: no probe)
probe_steps: int = 0  # 0: probe every thinking step; k > 0: k seeded step indices
probe_seed: int = 0  # seed of the step subset
probe_dataset: str = "gsm8k"  # benchmark whose soft-input runs are probed (empty: every benchmark)
probe_device: str = "cpu"  # device of the probe's model

# %%
from softthink.notebooks import notebook_params

P = notebook_params("diagnostics", globals())
P.to_dict()

# %%
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from softthink import diagnostics, figures, pipeline, probe, report, summaries

dirs = pipeline.graded_runs(pipeline.manifest_runs(P.manifest or None, P.runs_dir))
summary = summaries.summarize_runs(dirs) if dirs else None
out = Path(P.out_dir)
out.mkdir(parents=True, exist_ok=True)
outputs, md = [], ["## Diagnostics — is Soft Thinking more than greedy decoding?", "", diagnostics.DEMO_NOTE, ""]
print(f"{len(dirs)} graded runs")

# %% [markdown]
# ## Trajectory agreement with greedy CoT

# %%
agree = diagnostics.agreement_frame(summary, grader=P.grader)
agree_tab = diagnostics.agreement_table(agree)
agree.to_csv(out / "agreement.csv", index=False)
outputs.append(str(out / "agreement.csv"))
no_pair = "No soft-input run with a greedy CoT run of the same model and benchmark."
md += ["### Trajectory agreement with greedy CoT (same item and model)", "",
       agree_tab.to_markdown(index=False, floatfmt=".1f") if len(agree_tab) else no_pair, ""]
display(Markdown("\n".join(md[-4:])))
fig = diagnostics.divergence_figure(agree)
outputs += figures.save_figure(fig, "divergence_steps", P.out_dir)
plt.show()

# %% [markdown]
# ## Top-1 reliance probe

# %%
probed = summary[summary.dataset == P.probe_dataset] if summary is not None and P.probe_dataset else summary
probe_dirs = [] if probed is None or P.probe_items <= 0 else \
    list(dict.fromkeys(probed[~probed.row.isin(probe.UNPROBED_ROWS)].run_dir))
frame = probe.probe_runs(probe_dirs, n_items=P.probe_items, n_steps=P.probe_steps, seed=P.probe_seed,
                         device=P.probe_device)
probe_tab = probe.probe_table(frame)
frame.to_csv(out / "probe.csv", index=False)
outputs.append(str(out / "probe.csv"))
md += ["### Top-1 reliance probe (JS divergence of the next-step distribution, nats)", "",
       probe_tab.to_markdown(index=False, floatfmt=".3f") if len(probe_tab) else "No probed run.", ""]
display(Markdown("\n".join(md[-4:])))
fig = probe.probe_figure(frame)
outputs += figures.save_figure(fig, "probe_js", P.out_dir)
plt.show()

# %% [markdown]
# ## Paired differences against greedy CoT

# %%
paired = diagnostics.paired_frame(summary, grader=P.grader)
md.append(diagnostics.paired_markdown(paired, "Paired differences against CoT Thinking (Greedy)"))
display(Markdown(md[-1]))
(out / "diagnostics.md").write_text("\n".join(md) + "\n")
outputs.append(str(out / "diagnostics.md"))

# %%
metrics = {"runs": len(dirs), "agreement_samples": len(agree), "probed_runs": len(probe_dirs),
           "probed_steps": len(frame), "paired": len(paired)}
report.write_sidecar(P.sidecar, "diagnostics", P, metrics=metrics, inputs=dirs, outputs=outputs)
metrics
