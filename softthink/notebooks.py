"""Notebook plumbing: jupytext sources -> ipynb, the parameters convention, papermill execution, sidecars.

`notebooks/<name>.py` (jupytext py:percent) is the source of truth. Each has exactly one cell tagged `parameters`
whose lines are typed and commented (`max_topk: int = 10  # concept width K`); those annotations are the parameter
types :func:`notebook_params` checks (docs/design/evaluation.md §8): nothing else declares them.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from softthink.config import ConfigError
from softthink.files import repo_root

KERNEL_NAME = "softthink"
NOTEBOOKS = ("generate", "grade", "tables", "figures", "explore", "sweep_analysis", "diagnostics")
ANALYSIS_NOTEBOOKS = ("tables", "figures", "sweep_analysis", "explore", "diagnostics")
_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"




def build_notebooks(out_dir: Path | str = "build/notebooks", names: Iterable[str] = NOTEBOOKS) -> dict[str, Path]:
    """Convert `notebooks/<name>.py` (py:percent, the source of truth) to ipynb with the softthink kernelspec."""
    import jupytext

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        src = notebooks_dir() / f"{name}.py"
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python (softthink)", "language": "python"}
        nb.metadata.pop("jupytext", None)
        dst = out_dir / f"{name}.ipynb"
        jupytext.write(nb, dst, fmt="ipynb")
        out[name] = dst
    return out


def check_notebook_source(name: str) -> list[str]:
    """Conventions of docs/design/evaluation.md §8: exactly one `parameters` cell, every parameter typed and commented,
    a params-validation call right after it, a sidecar written through the library."""
    import jupytext

    src = notebooks_dir() / f"{name}.py"
    nb = jupytext.read(src)
    problems = []
    pcells = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if len(pcells) != 1:
        return [f"{name}: expected exactly one cell tagged 'parameters', found {len(pcells)}"]
    cell = nb.cells[pcells[0]]
    for line in cell.source.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not re.match(r"^[A-Za-z_]\w*\s*:\s*[^=]+=\s*.+#\s*\S", s):
            problems.append(f"{name}: parameter line without type hint or comment: {s!r}")
    from papermill.translators import PythonTranslator

    declared = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    parsed = PythonTranslator.inspect({"source": cell.source})
    if len(parsed) != len(declared):
        names = {p.name for p in parsed}
        problems.append(f"{name}: papermill cannot parse parameter line(s) "
                        f"{[ln for ln in declared if ln.split(':')[0].strip() not in names]} (no '=' or quotes in comments)")
    nxt = nb.cells[pcells[0] + 1].source if pcells[0] + 1 < len(nb.cells) else ""
    if "notebook_params(" not in nxt:
        problems.append(f"{name}: the cell after 'parameters' must validate them with softthink.notebooks.notebook_params")
    if "write_sidecar(" not in "".join(c.source for c in nb.cells):
        problems.append(f"{name}: no sidecar written (softthink.report.write_sidecar)")
    return problems


def paired_out_of_sync() -> list[str]:
    """notebooks/*.ipynb written by jupytext pairing in JupyterLab (gitignored copies) whose code/markdown differ
    from the `.py` source of truth. The `.py` files are what the pipeline runs."""
    import jupytext

    bad = []
    for ipynb in sorted(notebooks_dir().glob("*.ipynb")):
        src = ipynb.with_suffix(".py")
        if not src.exists():
            bad.append(f"{ipynb.name}: no {src.name} (the .py file is the source of truth)")
            continue
        a = [(c.cell_type, c.source.strip()) for c in jupytext.read(src).cells]
        b = [(c.cell_type, c.source.strip()) for c in jupytext.read(ipynb).cells]
        if a != b:
            bad.append(f"{ipynb.name}: differs from {src.name}; run `jupytext --sync notebooks/{src.name}`")
    return bad


_NB_IGNORE = {"In", "Out", "get_ipython", "exit", "quit", "open"}


@dataclass
class NotebookParams:
    """Validated parameters of one notebook run (attribute access)."""

    notebook: str
    values: dict[str, Any]

    def __getattr__(self, k: str) -> Any:
        try:
            return self.__dict__["values"][k]
        except KeyError:
            raise AttributeError(k) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


@functools.lru_cache(maxsize=None)
def param_types(notebook: str) -> dict[str, type]:
    """``{name: type}`` of a notebook's parameters, read from the annotations of its `parameters` cell."""
    import jupytext
    from papermill.translators import PythonTranslator

    src = notebooks_dir() / f"{notebook}.py"
    if not src.exists():
        raise ConfigError(f"unknown notebook {notebook!r}; notebooks: {', '.join(NOTEBOOKS)}")
    cells = [c for c in jupytext.read(src).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{src}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    types = {}
    for p in PythonTranslator.inspect({"source": cells[0].source}):
        if p.inferred_type_name not in _TYPES:
            raise ConfigError(f"{src}: parameter {p.name!r} has type {p.inferred_type_name!r}; "
                              f"annotate it with one of {', '.join(_TYPES)}")
        types[p.name] = _TYPES[p.inferred_type_name]
    return types


def notebook_params(notebook: str, namespace: dict[str, Any]) -> NotebookParams:
    """Coerce and validate a notebook's parameters (the globals after the parameters + injected cells).

    Unknown names (a misspelt `-p`) raise: papermill only warns about them."""
    types = param_types(notebook)
    values = {}
    unknown = [k for k, v in namespace.items() if not k.startswith("_") and k not in _NB_IGNORE and k not in types
               and not callable(v) and type(v).__name__ != "module"]
    if unknown:
        raise ConfigError(f"{notebook}: unknown parameter(s) {sorted(unknown)}; allowed: {', '.join(types)}")
    for k, t in types.items():
        if k not in namespace:
            raise ConfigError(f"{notebook}: parameter {k!r} missing")
        v = namespace[k]
        if t is float and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif t is float and isinstance(v, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                v = float(v)
            except ValueError:
                pass
        if t is list and isinstance(v, (tuple, str)):
            v = [v] if isinstance(v, str) and v else list(v) if not isinstance(v, str) else []
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise ConfigError(f"{notebook}: parameter {k!r} must be {getattr(t, '__name__', t)}, got {v!r}")
        values[k] = v
    return NotebookParams(notebook, values)


def kernel_installed(name: str = KERNEL_NAME) -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return name in KernelSpecManager().find_kernel_specs()


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    if not kernel_installed(name):
        raise RuntimeError(f"Jupyter kernel {name!r} is not installed; run: "
                           f"{sys.executable} -m ipykernel install --sys-prefix --name {name}  (make kernel)")


def execute_notebook(ipynb: Path, out: Path, parameters: dict[str, Any], timeout_s: int | None = None,
                     env: dict[str, str] | None = None, cwd: Path | None = None, log: Path | None = None) -> tuple[bool, str]:
    """papermill in a child process (`-k softthink`); returns (ok, error text). The executed notebook is always
    written (with papermill's error banner on failure)."""
    import yaml

    out.parent.mkdir(parents=True, exist_ok=True)
    pfile = out.with_suffix(".params.yaml")
    pfile.write_text(yaml.safe_dump(parameters, sort_keys=False))
    cmd = [sys.executable, "-m", "papermill", str(ipynb), str(out), "-k", KERNEL_NAME, "-f", str(pfile),
           "--cwd", str(cwd or repo_root()), "--no-progress-bar"]
    if timeout_s:
        cmd += ["--execution-timeout", str(int(timeout_s))]
    full_env = dict(os.environ)
    full_env.setdefault("MPLBACKEND", "Agg")
    full_env["PYTHONPATH"] = str(repo_root()) + (os.pathsep + full_env["PYTHONPATH"]
                                                 if full_env.get("PYTHONPATH") else "")
    full_env.update(env or {})
    log = log or out.with_suffix(".log")
    with open(log, "w") as fh:
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    if res.returncode != 0:
        tail = log.read_text()[-3000:]
        m = re.findall(r"^(\w+(?:Error|Exception)[^\n]*)", tail, flags=re.M)
        return False, (m[-1] if m else tail.strip().splitlines()[-1] if tail.strip() else f"exit {res.returncode}")
    return True, ""


def attach_papermill(sidecar: Path, executed: Path) -> None:
    """Copy `metadata.papermill` of an executed notebook into its sidecar (docs/design/evaluation.md §8)."""
    if not executed.exists():
        return
    try:
        nb = json.loads(executed.read_text())
    except (OSError, json.JSONDecodeError):
        return
    pm = nb.get("metadata", {}).get("papermill", {})
    body = json.loads(sidecar.read_text()) if sidecar.exists() else {"notebook": executed.stem, "status": "failed"}
    body["papermill"] = {k: pm.get(k) for k in ("parameters", "start_time", "end_time", "duration", "exception",
                                                "input_path", "output_path", "version")}
    body["executed_notebook"] = str(executed)
    tmp = sidecar.with_suffix(".json.tmp")
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(body, indent=1, default=str))
    os.replace(tmp, sidecar)
