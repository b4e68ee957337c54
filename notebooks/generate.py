# %% [markdown]
# # Generate — run specs → run directories
#
# Reads run specs (`params/<profile>/*.yaml`, the keys of `softthink.runspec.RunSpec`), generates every missing
# sample into each run's directory (resumable: a partial run continues where it stopped), and shows a few outputs
# per run. Several specs of one model share one engine: the transformers model is loaded once, and SGLang runs are
# clients of one server (`server_url`, every missing sample in flight at once). Grading happens later in its own
# process (the *grade* notebook). All logic lives in `softthink.groups` and `softthink.generate`.

# %% tags=["parameters"]
spec_file: str = "params/demo/gsm8k-soft.yaml"  # run spec YAML (softthink.runspec.RunSpec keys)
spec_files: list = []  # several run specs generated with one engine (overrides spec_file and sidecar)
sidecars: list = []  # one JSON sidecar per entry of spec_files
runs_dir: str = "runs"  # root of the run directories
sidecar: str = "build/sidecars/generate.json"  # JSON sidecar written at the end (single spec_file)
server_url: str = ""  # SGLang specs: the running sglang-serve to send the samples to
n_preview: int = 2  # sample outputs shown per run (GPQA: lengths and flags only, never text)
progress: bool = True  # show a progress bar
overrides: list = []  # dotted-key overrides: the strings `python -m softthink run --set` takes

# %%
from softthink.notebooks import notebook_params

P = notebook_params("generate", globals())
P.to_dict()

# %%
import pandas as pd

from softthink import report
from softthink.groups import generate_specs

files = list(P.spec_files) or [P.spec_file]
rows = generate_specs(files, P.runs_dir, server_url=P.server_url, progress=P.progress, overrides=P.overrides)
for row, side in zip(rows, list(P.sidecars) or [P.sidecar]):
    if row["status"] == "ok":
        report.write_sidecar(side, "generate", P, metrics=row["metrics"], inputs=[row["run_dir"]],
                             outputs=[row["run_dir"]], extra={k: row[k] for k in ("spec_file", "run_dir", "run_hash", "spec")})
    else:
        report.write_sidecar(side, "generate", P, extra={"status": "failed", "spec_file": row["spec_file"],
                                                        "error": row["error"]})
pd.DataFrame([{k: v for k, v in r.items() if k != "spec"} for r in rows])

# %%
pd.set_option("display.max_colwidth", 300)
for row in rows:
    if row["status"] == "ok":
        print(row["run_dir"])
        display(pd.DataFrame(report.preview_samples(row["run_dir"], P.n_preview)))  # noqa: F821 (IPython)

# %%
failed = [r for r in rows if r["status"] != "ok"]
if failed:
    raise RuntimeError(f"{len(failed)} of {len(rows)} runs failed: " + "; ".join(r["error"] for r in failed))
