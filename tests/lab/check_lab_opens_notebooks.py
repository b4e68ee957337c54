"""Browser check for `make lab`: a double-click on a jupytext `.py` notebook opens it as a notebook.

Run by `make lab-check` (kept out of `make test`: it starts JupyterLab and a real browser, ~1 minute). It starts
`jupyter lab` on notebooks/ twice, headless, on free localhost ports with a random token, and drives Debian's Chromium
through Playwright (the system browser: `playwright install` is never needed):

  project   the lab as `make lab` runs it (the environment's settings, with notebooks/jupyterlab-overrides.json
            installed): double-clicking explore.py must open a notebook panel whose code cells include the
            `parameters` cell, not a text editor;
  control   the same lab with an empty application settings directory (JupyterLab's own defaults): the same
            double-click is expected to open the text editor. If it opens a notebook too, the project result
            proves nothing about our setting, so that counts as a failure.

Both runs use a throw-away Jupyter config, user-settings and workspaces directory, so nothing from ~/.jupyter decides
the outcome. Afterwards notebooks/ must hold exactly the files it held before (opening must not write a paired
.ipynb or anything else). Screenshots go to build/lab-check/. Prints PASS or FAIL; exits 1 on failure.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
TRACKED_OVERRIDES = NOTEBOOKS / "jupyterlab-overrides.json"
# the flags for a headless, offline, throw-away Chromium (the profile is a fresh temporary directory per run)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PARAMETER_MARKER = "question: str ="  # a line of explore.py's `parameters` cell


def installed_overrides() -> Path:
    """Where `make lab` installs the overrides: the application settings directory of this environment's lab."""
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir()) / "settings" / "overrides.d" / "softthink.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content, except Jupyter's own `.ipynb_checkpoints/` (gitignored; JupyterLab
    writes a checkpoint whenever it opens a file)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and ".ipynb_checkpoints" not in p.parts}


def preflight() -> list[str]:
    """What must hold before a browser is worth starting: jupytext's lab extension, our overrides installed."""
    problems = []
    from jupyter_core.paths import jupyter_path

    if not any((Path(d) / "jupyterlab-jupytext" / "package.json").exists() for d in jupyter_path("labextensions")):
        problems.append("the jupytext JupyterLab extension (jupyterlab-jupytext) is not installed in this environment")
    inst = installed_overrides()
    if not inst.exists():
        problems.append(f"{inst} is missing (make lab / make lab-check install it)")
    elif json.loads(inst.read_text()) != json.loads(TRACKED_OVERRIDES.read_text()):
        problems.append(f"{inst} differs from {TRACKED_OVERRIDES.relative_to(ROOT)} (rerun make lab-check)")
    return problems


class Lab:
    """`jupyter lab` on notebooks/, headless, isolated from the user's ~/.jupyter; `app_settings_dir` None = the
    environment's own (what `make lab` uses)."""

    def __init__(self, tmp: Path, app_settings_dir: Path | None):
        self.port, self.token = free_port(), secrets.token_hex(16)
        env = dict(os.environ)
        for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTERLAB_SETTINGS_DIR", "user-settings"),
                         ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("JUPYTER_RUNTIME_DIR", "runtime")]:
            env[var] = str(tmp / sub)
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        # no "fetch Jupyter news?" toast over the screenshot (a user setting, in the throw-away settings directory)
        notif = tmp / "user-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notif.parent.mkdir(parents=True, exist_ok=True)
        notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={NOTEBOOKS}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root; jupyter refuses it otherwise
            cmd.append("--allow-root")
        if app_settings_dir is not None:
            cmd.append(f"--LabApp.app_settings_dir={app_settings_dir}")
        self.log_path = tmp / "jupyter-lab.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/lab?token={self.token}"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def open_by_double_click(lab: Lab, chromium: str, profile: Path, notebook: str, shot: Path, save: bool) -> dict:
    """Double-click `notebook` in the lab's file browser; say what opened (`notebook`, `editor` or `nothing`).
    `save`: then save it (Ctrl+S) as a user would, so that the caller can check what saving writes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=chromium, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        try:
            page = ctx.new_page()
            page.goto(lab.url, wait_until="domcontentloaded", timeout=120_000)
            item = page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText",
                                                                          has_text=notebook)).first
            item.wait_for(state="visible", timeout=120_000)
            item.dblclick()
            # whichever main-area widget appears first: a notebook panel, or a file editor
            main = "#jp-main-dock-panel"
            opened = page.locator(f"{main} .jp-NotebookPanel, {main} .jp-FileEditor").first
            result: dict = {"opened": "nothing"}
            try:
                opened.wait_for(state="visible", timeout=60_000)
            except Exception:
                page.screenshot(path=str(shot))
                return result
            if page.locator(f"{main} .jp-NotebookPanel").count():
                panel = page.locator(f"{main} .jp-NotebookPanel").first
                # the cells render after the notebook model loads: wait for the parameters cell itself
                params = panel.locator(".jp-CodeCell", has_text=PARAMETER_MARKER).first
                try:
                    params.wait_for(state="visible", timeout=60_000)
                except Exception:
                    pass
                page.wait_for_timeout(1500)  # let the kernel indicator and toolbar settle for the screenshot
                result = {"opened": "notebook",
                          "code_cells": panel.locator(".jp-CodeCell").count(),
                          "markdown_cells": panel.locator(".jp-MarkdownCell").count(),
                          "parameters_cell": params.count() > 0,
                          "kernel": (panel.locator(".jp-KernelName").first.inner_text(timeout=5_000)
                                     if panel.locator(".jp-KernelName").count() else "?")}
            else:
                page.wait_for_timeout(1000)
                result = {"opened": "editor"}
            tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
            result["tab"] = tab.locator(".lm-TabBar-tabLabel").first.inner_text()
            # a kernel dialog ("Select Kernel") would stand between the user and the notebook: report it
            result["dialog"] = page.locator(".jp-Dialog").count() > 0
            page.screenshot(path=str(shot))
            if save and result["opened"] == "notebook" and not result["dialog"]:
                page.locator("#jp-main-dock-panel .jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
                page.keyboard.press("Control+s")
                # saved = the tab loses its unsaved-changes mark (JupyterLab marks the tab jp-mod-dirty)
                try:
                    page.wait_for_function("() => !document.querySelector("
                                           "'#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
                                           timeout=30_000)
                    result["saved"] = True
                except Exception:
                    result["saved"] = False
                page.wait_for_timeout(1000)
            return result
        finally:
            ctx.close()


def run_case(name: str, chromium: str, out: Path, notebook: str, control: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"softthink-lab-{name}-"))
    try:
        settings = tmp / "empty-app-settings" if control else None
        if settings is not None:
            settings.mkdir()
        lab = Lab(tmp, settings)
        try:
            lab.wait_ready()
            shot = out / f"{name}.png"
            res = open_by_double_click(lab, chromium, tmp / "chromium-profile", notebook, shot, save=not control)
            res["screenshot"] = str(shot.relative_to(ROOT)) if shot.is_relative_to(ROOT) else str(shot)
            return res
        finally:
            lab.stop()
            shutil.copy(lab.log_path, out / f"{name}-jupyter-lab.log")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    ap.add_argument("--notebook", default="explore.py", help="the notebook in notebooks/ to double-click")
    ap.add_argument("--out", default=str(ROOT / "build" / "lab-check"), help="screenshots and lab logs")
    ap.add_argument("--skip-control", action="store_true", help="only the project run (no sensitivity check)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    from importlib.metadata import version

    chromium_version = subprocess.run([args.chromium, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"jupyterlab {version('jupyterlab')}, jupytext {version('jupytext')}, "
          f"playwright {version('playwright')}, {chromium_version}")
    print(f"overrides: {installed_overrides()}")

    failures = preflight()
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        return 1

    before = snapshot(NOTEBOOKS)
    proj = run_case("project", args.chromium, out, args.notebook, control=False)
    print(f"project (make lab settings): {json.dumps(proj)}")
    if proj["opened"] != "notebook":
        failures.append(f"double-click on {args.notebook} opened {proj['opened']!r}, not a notebook")
    else:
        if not proj["parameters_cell"]:
            failures.append(f"notebook panel opened but no code cell shows {PARAMETER_MARKER!r}")
        if proj["dialog"]:
            failures.append("a dialog (e.g. kernel selection) is open over the notebook")

    if not args.skip_control:
        ctrl = run_case("control", args.chromium, out, args.notebook, control=True)
        print(f"control (JupyterLab defaults, no overrides): {json.dumps(ctrl)}")
        if ctrl["opened"] != "editor":
            failures.append(f"without the overrides the double-click opened {ctrl['opened']!r}, not the text editor: "
                            "the project result does not show that our setting is what makes the difference")

    if proj.get("saved") is False:
        failures.append("Ctrl+S did not save the notebook (the tab stayed marked as modified)")
    # opening and saving an unedited notebook must leave notebooks/ as it was: the .py byte for byte (no jupytext
    # header added), no paired .ipynb (softthink validate-params checks paired copies), nothing else new
    after = snapshot(NOTEBOOKS)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
    for k in changed:  # put tracked sources back as they were: a check must not edit the repository
        (NOTEBOOKS / k).write_bytes(before[k])
    if new or changed:
        failures.append(f"opening/saving left notebooks/ changed: new {new}, modified (restored) {changed}")
    sys.path.insert(0, str(ROOT))
    from softthink.notebooks import paired_out_of_sync

    failures += [f"validate-params would report: {p}" for p in paired_out_of_sync()]

    for f in failures:
        print(f"FAIL: {f}")
    print(f"{'PASS' if not failures else 'FAIL'}: make lab opens notebooks/{args.notebook} as a notebook "
          f"(screenshots in {out})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
