# %% [markdown]
# # Figures — cached runs → Figure 1, concept tokens (Figures 3–4), length distributions, accuracy vs length, Pareto view
#
# Reads cached results only. PNG + PDF in `out_dir`; `pareto_methods` puts every method's run per benchmark on the
# accuracy-length plane and marks the Pareto front; `pareto_paired` gives each method's accuracy minus greedy CoT's on
# the same items with a paired bootstrap interval. One palette for methods across every figure
# (`softthink.figures.METHOD_PALETTE`); published vs ours by hatching. Logic: `softthink.figures`.

# %% tags=["parameters"]
runs_dir: str = "runs"  # root of the run directories
manifest: str = ""  # build/<profile>/manifest.json restricting the runs (empty: every run under runs_dir)
out_dir: str = "figures"  # where the PNG and PDF files go
sidecar: str = "build/sidecars/figures.json"  # JSON sidecar written at the end
grader: str = "suite"  # grader mode whose grades are plotted
trace_run: str = ""  # run directory whose first trace is drawn (empty: the first soft run with traces)
max_trace_steps: int = 80  # steps shown in the concept-token figure
top_k_shown: int = 5  # candidate tokens shown per step

# %%
from softthink.notebooks import notebook_params

P = notebook_params("figures", globals())
P.to_dict()

# %%
import matplotlib.pyplot as plt

from softthink import diagnostics, figures, pipeline, report, summaries, tables

all_dirs = pipeline.manifest_runs(P.manifest or None, P.runs_dir)
dirs = pipeline.graded_runs(all_dirs)
summary = summaries.summarize_runs(dirs) if dirs else None
outputs = []
print(f"{len(dirs)} graded runs of {len(all_dirs)}")

# %%
fig = figures.figure1(tables.normalize(summary, grader=P.grader))
outputs += figures.save_figure(fig, "figure1", P.out_dir)
plt.show()

# %%
trace, decode, trace_src = figures.find_trace(all_dirs, P.trace_run or None)
if trace is not None:
    fig = figures.concept_tokens(trace, decode=decode, top=P.top_k_shown, max_steps=P.max_trace_steps,
                                 title=f"Concept tokens per step — {trace_src}")
    outputs += figures.save_figure(fig, "concept_tokens", P.out_dir)
    plt.show()
else:
    print("no run with traces (set generation.trace: true in a soft-thinking spec)")

# %%
samples = figures.samples_frame(all_dirs)
if len(samples):
    fig = figures.length_distributions(samples)
    outputs += figures.save_figure(fig, "length_distributions", P.out_dir)
    plt.show()

# %%
if summary is not None and len(summary):
    fig = figures.acc_vs_length(tables.normalize(summary, grader=P.grader))
    outputs += figures.save_figure(fig, "acc_vs_length", P.out_dir)
    plt.show()

# %%
if summary is not None and len(summary):
    fig = figures.pareto_view(summary, grader=P.grader)
    outputs += figures.save_figure(fig, "pareto_methods", P.out_dir)
    plt.show()
    # the Pareto view's paired companion: every method − greedy CoT on the same items, with its interval
    fig = diagnostics.paired_figure(diagnostics.paired_frame(summary, grader=P.grader))
    outputs += figures.save_figure(fig, "pareto_paired", P.out_dir)
    plt.show()

# %%
report.write_sidecar(P.sidecar, "figures", P, metrics={"runs": len(dirs), "figures": len(outputs) // 2,
                                                       "trace": trace_src},
                     inputs=all_dirs, outputs=outputs)
outputs
