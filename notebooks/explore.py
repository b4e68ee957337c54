# %% [markdown]
# # Explore — soft thinking vs discrete decoding on one question
#
# Type a question, run Soft Thinking and greedy discrete decoding on the bundled model, and inspect the concept tokens
# of every step (top-k tokens and weights, argmax outlined), the entropy, and where Cold Stop fired. In JupyterLab the
# widgets below are live; run headless (papermill, `interactive=False`) it answers `question` once.

# %% tags=["parameters"]
model: str = "smollm2-135m"  # bundled alias, HF id or local path
question: str = "What is 43 * 34?"  # the question asked (Figure 3 of the paper)
max_new_tokens: int = 96  # generation limit (thinking + answer)
max_topk: int = 10  # concept width K
threshold: float = 0.01  # Cold Stop entropy threshold tau in nats (0: off)
length: int = 256  # Cold Stop length L (consecutive low-entropy steps)
sidecar: str = "build/sidecars/explore.json"  # JSON sidecar written at the end
interactive: bool = True  # show ipywidgets (ignored when no widget front end)
device: str = "cpu"  # torch device

# %%
from softthink.notebooks import notebook_params

P = notebook_params("explore", globals())
P.to_dict()

# %%
import matplotlib.pyplot as plt

from softthink import explore as ex, report

session = ex.ExploreSession.load(P.model, device=P.device)
result = session.compare(P.question, max_new_tokens=P.max_new_tokens, max_topk=P.max_topk, threshold=P.threshold,
                         length=P.length)
ex.show_result(result, session)
plt.show()

# %%
if P.interactive:
    ex.widget(session, defaults=P.to_dict())

# %%
report.write_sidecar(P.sidecar, "explore", P, metrics=ex.result_metrics(result))
ex.result_metrics(result)
