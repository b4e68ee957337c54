# %% [markdown]
# # Generate — one experiment config → one run directory
#
# Reads one run spec (`params/<profile>/*.yaml`, the keys of `softthink.runspec.RunSpec`), generates every missing
# sample into its run directory (resumable: a partial run continues where it stopped), and shows a few outputs.
# Grading happens later in its own process (the *grade* notebook). All logic lives in `softthink.runs`.

# %% tags=["parameters"]
spec_file: str = "params/demo/gsm8k-soft.yaml"  # run spec YAML (softthink.runspec.RunSpec keys)
runs_dir: str = "runs"  # root of the run directories
sidecar: str = "build/sidecars/generate.json"  # JSON sidecar written at the end
n_preview: int = 2  # sample outputs shown (GPQA: lengths and flags only, never text)
progress: bool = True  # show a progress bar
overrides: list = []  # dotted-key overrides: the strings `python -m softthink run --set` takes

# %%
from softthink.notebooks import notebook_params

P = notebook_params("generate", globals())
P.to_dict()

# %%
import pandas as pd

from softthink import report, runspec, store
from softthink.generate import generate_run

spec = runspec.RunSpec.from_yaml(P.spec_file, P.overrides)
spec.to_dict()

# %%
rd = generate_run(spec, progress=P.progress, runs_dir=P.runs_dir)
samples = rd.samples()
print(f"run directory: {rd.path}\nsamples: {len(samples)} of {store.expected_samples(rd)}")

# %%
pd.set_option("display.max_colwidth", 300)
pd.DataFrame(report.preview_samples(rd.path, P.n_preview))

# %%
lengths = [s.get("num_tokens") or 0 for s in samples]
metrics = {"samples": len(samples), "expected": store.expected_samples(rd),
           "mean_tokens": sum(lengths) / max(1, len(lengths)),
           "finish_reasons": pd.Series([s.get("finish_reason") for s in samples]).value_counts().to_dict(),
           "think_end_reasons": pd.Series([str(s.get("think_end_reason")) for s in samples]).value_counts().to_dict()}
report.write_sidecar(P.sidecar, "generate", P, metrics=metrics, inputs=[rd.path], outputs=[str(rd.path)],
                     extra={"run_dir": str(rd.path), "run_hash": rd.hash, "spec": spec.to_dict()})
metrics
