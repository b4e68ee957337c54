"""Notebook sidecars and the HTML report (`build/report/index.html`).

* `write_sidecar(path, notebook, params, ...)`: what every notebook writes as `<output>.json` (docs/design/evaluation.md §8):
  parameters and their hash, input run directories with their run keys, metrics, versions (git SHA, packages, GPU),
  timings. The pipeline adds the executed notebook's `metadata.papermill` afterwards (`profiles.attach_papermill`).
* `preview_samples(run_dir, k)`: a few sample outputs for the generate notebook; **never** GPQA text (only lengths
  and flags are shown for gpqa_diamond: GPQA's terms ask that examples are not published in plain text).
* `build_report(...)`: one self-contained HTML page (images embedded) with every table (ours beside published),
  every figure, each run's configuration and versions, and the notebooks rendered without input (nbconvert
  `--no-input`) as separate pages. Every HTML file written is scanned for GPQA question, option and completion text;
  a hit deletes the file and raises.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from softthink.files import repo_root
from softthink.store import SAMPLES_FILE, SUMMARY_FILE, RunDir, read_jsonl, read_run_config

def _is_gpqa(dataset: str | None) -> bool:
    """GPQA-like benchmarks (the registry's kind "gpqa") keep their texts out of anything published."""
    from softthink.data import DATASETS

    return dataset in DATASETS and DATASETS[dataset].kind == "gpqa"
PACKAGES = ("softthink", "torch", "transformers", "sglang", "numpy", "pandas", "matplotlib", "seaborn", "papermill",
            "jupytext", "nbconvert", "math-verify", "latex2sympy2_extended", "pebble")


# ================================================================================================================
# sidecars


def git_sha(root: Path | None = None) -> str | None:
    root = root or repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if sha.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "git": git_sha()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    gpu = None
    if "torch" in sys.modules:  # never import torch just to ask
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                gpu = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001
            gpu = None
    out["gpu"] = gpu
    return out


def param_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def run_inputs(run_dirs: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    out = []
    for d in run_dirs:
        cfg = read_run_config(d)
        out.append({"run_dir": str(d), "hash": cfg.get("hash") if cfg else None})
    return out


_T0 = time.time()


def write_sidecar(path: str | os.PathLike, notebook: str, params: Any, metrics: dict[str, Any] | None = None,
                  inputs: Iterable[str | os.PathLike] = (), outputs: Sequence[str] = (),
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the notebook's JSON sidecar atomically and return it."""
    p = params.to_dict() if hasattr(params, "to_dict") else dict(params)
    body = {
        "notebook": notebook,
        "status": "ok",
        "parameters": p,
        "param_hash": param_hash(p),
        "inputs": run_inputs(inputs),
        "outputs": list(outputs),
        "metrics": metrics or {},
        "versions": versions(),
        "timing": {"written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "kernel_seconds": round(time.time() - _T0, 3)},
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, default=str))
    os.replace(tmp, path)
    return body


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# ================================================================================================================
# previews (generate notebook)


def preview_samples(run_dir: str | os.PathLike, k: int = 2, max_chars: int = 600) -> list[dict[str, Any]]:
    """The first `k` samples of a run for display; GPQA rows carry no text at all."""
    rd = RunDir.open(run_dir)
    dataset = rd.spec.dataset if rd.spec else None
    out = []
    for s in rd.samples()[:k]:
        row = {"item": s.get("item_id"), "sample": s.get("sample_index"), "tokens": s.get("num_tokens"),
               "finish": s.get("finish_reason"), "think_end": s.get("think_end_reason")}
        if not _is_gpqa(dataset):
            text = s.get("text") or ""
            row["text"] = text if len(text) <= max_chars else text[: max_chars // 2] + " … " + text[-max_chars // 2:]
        else:
            row["text"] = "(GPQA text not shown: GPQA terms)"
        out.append(row)
    return out


# ================================================================================================================
# GPQA guard


MIN_DISTINCT_CHARS = 8  # completion openings with fewer distinct characters are not GPQA-specific


def gpqa_snippets(run_dirs: Iterable[str | os.PathLike] = (), min_len: int = 30) -> list[str]:
    """Strings that must never appear in published HTML: GPQA question openings, option texts, and the openings
    of completions of GPQA runs."""
    snips: set[str] = set()
    try:
        from softthink.data import load_dataset, names

        items = [it for name in names("gpqa") for it in load_dataset(name).items]
        for it in items:
            q = " ".join(str(it.question).split())
            if len(q) >= min_len:
                snips.add(q[:60])
            for opt in (it.meta.get("choices") or {}).values():
                o = " ".join(str(opt).split())
                if len(o) >= min_len:
                    snips.add(o[:60])
    except Exception:  # noqa: BLE001 - data not present: only the run texts are checked
        pass
    for d in run_dirs:
        p = Path(d)
        cfg = read_run_config(p)
        if cfg is None or not _is_gpqa(cfg.get("spec", {}).get("dataset")):
            continue
        for s in read_jsonl(p / SAMPLES_FILE):
            t = " ".join(str(s.get("text") or "").split())
            # a degenerate completion opening (e.g. COCONUT-TF's "_-----…" collapse) carries no GPQA text and would
            # match any other run's identical collapse: only openings with some variety are guarded
            if len(t) >= min_len and len(set(t[:60]) - {" "}) >= MIN_DISTINCT_CHARS:
                snips.add(t[:60])
    return sorted(snips)


def find_leaks(text: str, snippets: Sequence[str]) -> list[str]:
    flat = " ".join(text.split())
    unescaped = html.unescape(flat)
    return [s for s in snippets if s in flat or s in unescaped or html.escape(s) in flat]


def guard_file(path: Path, snippets: Sequence[str]) -> None:
    leaks = find_leaks(path.read_text(errors="replace"), snippets)
    if leaks:
        path.unlink()
        raise RuntimeError(f"{path}: contains GPQA text ({len(leaks)} snippet(s), e.g. {leaks[0][:25]!r}…); removed. "
                           "GPQA question text and completions must not be published (docs/design/evaluation.md §3.2).")


# ================================================================================================================
# report


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #aaa;margin-top:2em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f2f2f2}td:first-child,td:nth-child(2){text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1em 0}figcaption{font-size:13px;color:#444}
.ok{color:#167516}.failed{color:#b00020;font-weight:bold}.cached{color:#555}
details{margin:.3em 0}pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:11px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}
"""

FIGURE_CAPTIONS = {
    "figure1": "Figure 1 — average accuracy and generation length, CoT Thinking vs Soft Thinking, per model; published "
               "bars plain, ours hatched.",
    "concept_tokens": "Figures 3–4 (reproduction) — concept tokens of one soft-thinking trace: per step the top-k "
                      "tokens and weights, argmax outlined, Cold Stop in red, entropy above.",
    "length_distributions": "Diagnostic — distribution of generated tokens per sample, per dataset and method.",
    "acc_vs_length": "Diagnostic — accuracy vs mean generation length, one point per run.",
    "pareto_methods": "Every method — accuracy (pass@1) vs Len-All, one point per (method, benchmark) run, colour "
                      "and marker per method; the Pareto front of each benchmark (shorter and more accurate) ringed "
                      "and joined by a dashed staircase.",
    "pareto_paired": "Every method minus CoT Thinking (Greedy) on the same items: paired accuracy difference with its "
                     "95 % paired bootstrap interval, per benchmark (docs/diagnostics.md).",
    "divergence_steps": "Is it more than greedy? — first step where each soft-input sample's visible tokens leave the "
                        "greedy CoT sample of the same item, per method (docs/diagnostics.md).",
    "probe_js": "Is it more than greedy? — top-1 reliance probe: JS divergence between the next-step distributions "
                "under the concept token and under its one-hot top-1 (filled) / top-2 (hollow) token, against the step "
                "and the concept's top-1 weight (docs/diagnostics.md).",
    "sweep_heatmaps": "Diagnostic — hyperparameter sweep: accuracy over max_topk × Cold Stop τ, vs L and vs min-p.",
}


def _md_to_html(md: str) -> str:
    import mistune

    return mistune.create_markdown(plugins=["table"])(md)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_notebook_html(ipynb: Path, out: Path) -> Path:
    from nbconvert import HTMLExporter

    exp = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exp.from_filename(str(ipynb))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out


def _runs_section(runs: Sequence[str]) -> str:
    if not runs:
        return "<p>No runs.</p>"
    rows = []
    for d in runs:
        p = Path(d)
        cfg = read_run_config(p)
        if cfg is None:
            continue
        summ = {}
        if (p / SUMMARY_FILE).exists():
            summ = json.loads((p / SUMMARY_FILE).read_text())
        spec = cfg.get("spec", {})
        g = next(iter((summ.get("grades") or {}).values()), {}) if summ else {}
        acc = f"{100 * g['pass@1']:.2f}" if g.get("pass@1") is not None else "—"
        lc = f"{g['len_correct']:.0f}" if g.get("len_correct") is not None and g.get("len_correct") == g.get("len_correct") else "—"
        la = f"{g['len_all']:.0f}" if g.get("len_all") is not None else "—"
        settings = summ.get("settings") or {}
        detail = {"spec": spec, "settings": settings, "versions": cfg.get("versions"), "hash": cfg.get("hash"),
                  "created": cfg.get("created")}
        rows.append(
            f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(str(spec.get('model')))}</td>"
            f"<td>{html.escape(str(spec.get('dataset')))}</td><td>{html.escape(str(settings.get('method')))}</td>"
            f"<td>{summ.get('samples', '—')}/{summ.get('expected_samples', '—')}</td><td>{acc}</td><td>{lc}</td>"
            f"<td>{la}</td><td>{html.escape(str(next(iter(summ.get('grades') or {}), '—')))}</td>"
            f"<td><details><summary>config</summary><pre>{html.escape(json.dumps(detail, indent=1, default=str))}"
            f"</pre></details></td></tr>")
    head = ("<tr><th>run</th><th>model</th><th>dataset</th><th>method</th><th>samples</th><th>pass@1 (%)</th>"
            "<th>Len-Correct</th><th>Len-All</th><th>grader</th><th>configuration &amp; versions</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _steps_section(build_dir: Path) -> str:
    p = build_dir / "reproduce.json"
    if not p.exists():
        return "<p>No pipeline summary (reproduce.json) yet.</p>"
    body = json.loads(p.read_text())
    rows = "".join(
        f"<tr><td>{html.escape(s['step'])}</td><td>{html.escape(s['name'])}</td>"
        f"<td class='{s['status']}'>{s['status']}</td><td>{s['seconds']:.1f}</td>"
        f"<td>{html.escape(s.get('error') or '')}</td></tr>" for s in body.get("steps", []))
    return (f"<p>Profile <b>{html.escape(body['profile'])}</b>: {body['counts']} in {body['seconds']:.0f} s.</p>"
            f"<table><tr><th>step</th><th>name</th><th>status</th><th>seconds</th><th>error</th></tr>{rows}</table>")


def build_report(profile: str = "demo", build_dir: str | os.PathLike = "build/demo",
                 figures_dir: str | os.PathLike = "figures", out_dir: str | os.PathLike = "build/report",
                 runs: Sequence[str] = (), render_notebooks: bool = True) -> Path:
    """Write `<out_dir>/index.html` (+ `notebooks/*.html`); see the module docstring. Returns the index path."""
    from softthink import paper

    build_dir, figures_dir, out_dir = Path(build_dir), Path(figures_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    snippets = gpqa_snippets(runs)
    nb_links = []
    if render_notebooks and (build_dir / "executed").is_dir():
        for ipynb in sorted((build_dir / "executed").glob("*.ipynb")):
            dst = out_dir / "notebooks" / f"{ipynb.stem}.html"
            render_notebook_html(ipynb, dst)
            guard_file(dst, snippets)
            nb_links.append(dst)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Soft Thinking reproduction — {html.escape(profile)}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>Soft Thinking (arXiv {paper.PAPER['arxiv']}) — reproduction report, profile "
             f"<code>{html.escape(profile)}</code></h1>",
             f"<p>Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; git "
             f"<code>{html.escape(str(git_sha()))}</code>. Published numbers: docs/design/paper.md (v1 tables, "
             f"{html.escape(paper.PAPER['tables_checked'])}). Accuracy = pass@1 (%) with the rule grader "
             "(suite mode) unless a table says otherwise; lengths = generated tokens (Len-Correct in Tables 1/2).</p>",
             "<p class='note'>Small profiles (demo, methods, ci) use tiny models on a few items per benchmark: their numbers "
             "exercise the pipeline and are not comparable with the published ones.</p>",
             "<h2>Pipeline</h2>", _steps_section(build_dir), "<h2>Tables</h2>"]
    oracles = paper.check_consistency()
    bad = [o for o in oracles if not o.ok]
    parts.append(f"<p>Consistency oracles of the published numbers (docs/design/paper.md §6): {len(oracles) - len(bad)}/"
                 f"{len(oracles)} hold.</p>")
    for name in ("table1", "table2", "table3", "comparison", "diagnostics"):
        md = figures_dir / f"{name}.md"
        if name in ("comparison", "diagnostics") and not md.exists():
            continue  # built by the tables / diagnostics notebooks of the methods profile; other builds lack them
        if md.exists():
            parts.append(_md_to_html(md.read_text().replace("## ", "### ", 1)))
            rel = os.path.relpath(figures_dir, out_dir)
            if name != "diagnostics":
                parts.append(f"<p>Also as <a href='{rel}/{name}.csv'>CSV</a> and "
                             f"<a href='{rel}/{name}.tex'>LaTeX</a> in <code>{figures_dir}/</code>.</p>")
        else:
            parts.append(f"<p>{name}: not built.</p>")
    parts.append("<h2>Figures</h2>")
    pngs = sorted(figures_dir.glob("*.png"))
    order = list(FIGURE_CAPTIONS)
    pngs.sort(key=lambda p: (next((i for i, k in enumerate(order) if p.stem.startswith(k)), len(order)), p.stem))
    for png in pngs:
        cap = next((v for k, v in FIGURE_CAPTIONS.items() if png.stem.startswith(k)), png.stem)
        parts.append(f"<figure>{_img(png)}<figcaption><b>{html.escape(png.stem)}</b> — {html.escape(cap)} "
                     f"(PDF beside it in <code>{figures_dir}/</code>)</figcaption></figure>")
    if not pngs:
        parts.append("<p>No figures built.</p>")
    parts += ["<h2>Runs: configuration and versions</h2>", _runs_section(runs)]
    parts.append("<h2>Notebooks (rendered without input)</h2>")
    parts.append("<ul>" + "".join(f"<li><a href='notebooks/{p.name}'>{html.escape(p.stem)}</a></li>"
                                  for p in nb_links) + "</ul>" if nb_links else "<p>None rendered.</p>")
    parts.append("<h2>Environment</h2><pre>" + html.escape(json.dumps(versions(), indent=1)) + "</pre>")
    parts.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts))
    guard_file(index, snippets)
    return index
