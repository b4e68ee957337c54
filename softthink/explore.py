"""Helpers of the *explore* notebook: one question, Soft Thinking vs greedy discrete decoding, with the concept
tokens, entropy and Cold Stop of every step. Widgets (ipywidgets) when a front end is present; plain output
otherwise (papermill)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from softthink import figures


@dataclass
class ExploreSession:
    model_name: str
    model: Any
    tokenizer: Any
    engine: Any

    @classmethod
    def load(cls, model: str = "smollm2-135m", device: str = "cpu") -> "ExploreSession":
        from softthink.engine import HFEngine
        from softthink.models import load_model

        m, tok = load_model(model, device=device)
        return cls(model, m, tok, HFEngine(m, tok, progress=False))

    def compare(self, question: str, max_new_tokens: int = 96, max_topk: int = 10, threshold: float = 0.01,
                length: int = 256, seed: int = 0) -> dict[str, Any]:
        from softthink.chat import render_chat

        prompt = render_chat(self.tokenizer, question)
        soft_cfg = {"method": "soft", "max_new_tokens": max_new_tokens, "seed": seed, "trace": True,
                    "think": {"max_topk": max_topk}, "cold_stop": {"threshold": float(threshold), "length": length}}
        greedy_cfg = {"method": "cot_greedy", "max_new_tokens": max_new_tokens, "seed": seed}
        soft = self.engine.generate([prompt], soft_cfg)[0]
        greedy = self.engine.generate([prompt], greedy_cfg)[0]
        return {"question": question, "soft": soft, "greedy": greedy, "settings": soft_cfg}


def result_metrics(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"question": result["question"], "settings": result["settings"]}
    for k in ("soft", "greedy"):
        g = result[k]
        out[k] = {"num_tokens": g.num_tokens, "num_thinking_tokens": g.num_thinking_tokens,
                  "finish_reason": g.finish_reason, "think_end_reason": g.think_end_reason,
                  "think_end_step": g.think_end_step}
    tr = result["soft"].trace
    if tr is not None:
        cs = [i + 1 for i, c in enumerate(tr.cold_stop) if c]
        out["soft"]["cold_stop_steps"] = cs
        out["soft"]["mean_entropy_think"] = (sum(e for e, p in zip(tr.entropy, tr.phase) if p == "think")
                                             / max(1, sum(p == "think" for p in tr.phase)))
    return out


def show_result(result: dict[str, Any], session: ExploreSession, max_steps: int = 80):
    """Print both completions and draw the soft trace's concept tokens; returns the figure (or None)."""
    for k, label in (("soft", "Soft Thinking"), ("greedy", "CoT Thinking (Greedy)")):
        g = result[k]
        print(f"=== {label}: {g.num_tokens} tokens, finish {g.finish_reason}, end of thinking {g.think_end_reason} "
              f"(step {g.think_end_step})")
        print(g.text)
        print()
    tr = result["soft"].trace
    if tr is None:
        return None
    return figures.concept_tokens(tr.to_dict(), decode=session.tokenizer, max_steps=max_steps,
                                  title=f"Concept tokens per step — {session.model_name}: {result['question'][:60]}")


def widget(session: ExploreSession, defaults: dict[str, Any]):
    """Interactive controls; returns None (with a note) when ipywidgets or a widget front end is missing."""
    try:
        import ipywidgets as w
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print("ipywidgets not installed: change the parameters cell and rerun instead")
        return None
    ip = get_ipython()
    if ip is None or not getattr(ip, "kernel", None):
        print("no widget front end: change the parameters cell and rerun instead")
        return None
    import matplotlib.pyplot as plt

    q = w.Textarea(value=defaults.get("question", ""), description="question", layout=w.Layout(width="90%"))
    k = w.IntSlider(value=defaults.get("max_topk", 10), min=1, max=50, description="max_topk K")
    tau = w.FloatLogSlider(value=max(defaults.get("threshold", 0.01), 1e-4), base=10, min=-4, max=0.5,
                           description="Cold Stop τ")
    cs_on = w.Checkbox(value=defaults.get("threshold", 0.01) > 0, description="Cold Stop on")
    L = w.IntSlider(value=defaults.get("length", 256), min=1, max=1024, description="Cold Stop L")
    n = w.IntSlider(value=defaults.get("max_new_tokens", 96), min=8, max=1024, step=8, description="max tokens")
    run = w.Button(description="run", button_style="primary")
    out = w.Output()

    def on_click(_):
        with out:
            out.clear_output()
            res = session.compare(q.value, max_new_tokens=n.value, max_topk=k.value,
                                  threshold=tau.value if cs_on.value else 0.0, length=L.value)
            show_result(res, session)
            plt.show()

    run.on_click(on_click)
    box = w.VBox([q, w.HBox([k, n]), w.HBox([cs_on, tau, L]), run, out])
    display(box)
    return box
