# %% [markdown]
# # Tables — cached runs → Tables 1 (math), 2 (code), 3 (ablation), and every method compared
#
# Our numbers beside the published ones (docs/design/paper.md, v1) with the difference, in the paper's shape; written as Markdown,
# CSV and LaTeX to `out_dir`; then the extended comparison of every method (accuracy, Len-Correct, Len-All,
# pass@k where n > 1; key parameters in the row label) as `comparison.{md,csv,tex}`. Reads cached results only
# (no model). Logic: `softthink.tables`.

# %% tags=["parameters"]
runs_dir: str = "runs"  # root of the run directories
manifest: str = ""  # build/<profile>/manifest.json restricting the runs (empty: every run under runs_dir)
out_dir: str = "figures"  # where table{1,2,3}.{md,csv,tex} go
sidecar: str = "build/sidecars/tables.json"  # JSON sidecar written at the end
grader: str = "suite"  # grader mode whose grades are tabulated

# %%
from softthink.notebooks import notebook_params

P = notebook_params("tables", globals())
P.to_dict()

# %%
from IPython.display import Markdown, display

from softthink import comparison, paper, pipeline, report, summaries, tables

dirs = pipeline.graded_runs(pipeline.manifest_runs(P.manifest or None, P.runs_dir))
summary = summaries.summarize_runs(dirs) if dirs else None
print(f"{len(dirs)} graded runs")
oracles = paper.check_consistency()
print(f"published-number oracles: {sum(o.ok for o in oracles)}/{len(oracles)} hold")

# %%
written = tables.write_tables(summary, P.out_dir)
for name in ("table1", "table2", "table3"):
    display(Markdown(open(f"{P.out_dir}/{name}.md").read()))

# %% [markdown]
# ## Every method × benchmark (beyond the paper)

# %%
written["comparison"] = comparison.write_comparison(summary, P.out_dir, grader=P.grader)
display(Markdown(open(f"{P.out_dir}/comparison.md").read()))

# %%
metrics = {"runs": len(dirs), "averages": tables.table_summary_json(summary),
           "oracles_ok": sum(o.ok for o in oracles), "oracles": len(oracles)}
report.write_sidecar(P.sidecar, "tables", P, metrics=metrics, inputs=dirs,
                     outputs=[p for paths in written.values() for p in paths])
metrics["runs"], len(metrics["averages"])
