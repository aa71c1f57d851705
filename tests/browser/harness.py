"""A real JupyterLab for browser tests, and Debian's chromium driven by Playwright.

``jupyter_lab(root, env)`` starts ``jupyter lab`` on 127.0.0.1 (a free port, token auth,
``--allow-root``, no browser, settings and workspaces in temp folders, nothing fetched
from the network) in its own process group, and always stops it and its kernels.
``launch_chromium(playwright)`` starts ``/usr/bin/chromium`` headless; Playwright never
downloads a browser here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MLOPS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
#: Console messages that mean a script or module failed to load (the thing to never see).
SCRIPT_FAILURES = (
    "failed to load",
    "failed to fetch",
    "loading chunk",
    "importing a module script failed",
    "esm.sh",
    "cdn.jsdelivr",
    "net::err_",
    "error displaying widget",
    "could not create a view",
    "failed to create view",
    "cannot find module",
    "is not a function",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def api(self, path: str) -> Any:
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def _stop_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the server's process group (the server and its kernels), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # kernels that outlived the server
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(5)


@contextmanager
def jupyter_lab(
    root: Path, work: Path, env: dict[str, str] | None = None, timeout: float = 60, args: tuple[str, ...] = ()
) -> Iterator[Lab]:
    """``jupyter lab`` serving ``root`` on a free 127.0.0.1 port; stopped on exit, always.

    Args:
        root: the server's root folder (the notebooks).
        work: a scratch folder for its settings, workspaces, runtime files and log.
        env: extra environment for the server and its kernels (e.g. ``MLOPS_HOME``).
        args: extra command-line options (e.g. ``--MLOpsServer.mlflow_ui_url=...``).
    """
    port, token = free_port(), secrets.token_hex(16)
    for sub in ("settings", "workspaces", "runtime", "config", "data"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    log = work / "jupyterlab.log"
    # no "get notified about Jupyter news?" toast over the page (and no fetch for it)
    news = work / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    full_env = {
        **os.environ,
        **(env or {}),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    full_env.pop("JPY_SESSION_NAME", None)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--LabApp.expose_app_in_browser=True",
        f"--LabServerApp.user_settings_dir={work / 'settings'}",
        f"--LabServerApp.workspaces_dir={work / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        *args,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                lab.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not answer in {timeout} s:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield lab
    finally:
        _stop_group(proc)


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, with nothing of its own on the network."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def write_notebook(path: Path, cells: list[str]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def open_page(browser: Any, width: int = 1280, height: int = 900) -> tuple[Any, Any, list[str]]:
    """``(context, page, messages)``: a page in a new browser context of that viewport, its
    console errors and warnings and its uncaught errors collected into ``messages`` (see
    :func:`script_failures`). Close the context when done."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    return context, page, messages


@contextlib.contextmanager
def browser_page(
    browser: Any, artifacts: Path, name: str, width: int = 1280, height: int = 900, full_page: bool = False
) -> Iterator[tuple[Any, list[str]]]:
    """``(page, messages)`` of :func:`open_page`. On a failure inside, a screenshot and the
    page's HTML go to ``artifacts/<name>-failure.*``; the console always to
    ``<name>-console.txt``; on success no script may have failed (:func:`script_failures`)."""
    context, page, messages = open_page(browser, width, height)
    try:
        yield page, messages
    except BaseException:
        page.screenshot(path=str(artifacts / f"{name}-failure.png"), full_page=full_page)
        (artifacts / f"{name}-failure.html").write_text(page.content())
        raise
    finally:
        (artifacts / f"{name}-console.txt").write_text("\n".join(messages))
        context.close()
    assert script_failures(messages) == [], messages


def script_failures(messages: list[str]) -> list[str]:
    """The console messages that say a script, a module or a widget view failed."""
    return [m for m in messages if any(s in m.lower() for s in SCRIPT_FAILURES)]


# -- fixtures (import them into a test module: ``from harness import artifacts, browser``) ---------
# No conftest.py here on purpose: a second ``conftest`` module would shadow tests/conftest.py
# for the test modules that do ``from conftest import ...``.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and console logs go (``test-artifacts/browser/``, gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium (``/usr/bin/chromium``, never a downloaded one); the test fails
    when it is missing, rather than quietly not running (``make test`` installs it with apt).

    Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running
    in the main thread while it is open, which breaks the tests that run after it and use
    their own loop (pytest-jupyter's ``jp_fetch`` in tests/test_server_ext.py)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()


# -- themes, contrast and axe-core ---------------------------------------------------------------
KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
"""Page predicate: the current notebook's kernel is connected and idle."""
ALL_RAN = """(n) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.model.cells;
  let done = 0;
  for (let i = 0; i < cells.length; i++) { if (cells.get(i).executionCount) done++; }
  return done === n && w.sessionContext.session.kernel.status === 'idle';
}"""
"""Page predicate (argument ``n``): ``n`` cells have run and the kernel is idle again."""


THEMES = ("JupyterLab Light", "JupyterLab Dark")

#: Colour helpers of the page checks below (JS, in the scope of each check): parse a computed
#: colour, composite one over another, the background an element is seen on, WCAG luminance.
_COLOUR_JS = """
  const parse = (c) => {
    let m = /^rgba?\\(([^)]+)\\)$/.exec(c);
    if (m) {
      const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = /^color\\(srgb ([^)]+)\\)$/.exec(c);
    if (m) {
      const p = m[1].split(/[ \\/]+/).filter(Boolean).map(Number);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    return null;
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
"""

#: For every element under the matched roots that shows text: its WCAG contrast ratio, from
#: getComputedStyle (the text colour composited on the backgrounds behind it).
CONTRAST_JS = (
    "(selector) => {"
    + _COLOUR_JS
    + """
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    for (const el of [root, ...root.querySelectorAll('*')]) {
      const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
      if (!own || !el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
      const bg = background(el);
      const fg = over(parse(getComputedStyle(el).color) || [0, 0, 0, 1], bg);
      const [a, b] = [lum(fg), lum(bg)];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      out.push({ text: el.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100 });
    }
  }
  return out;
}"""
)

#: For every chart under the matched roots, WCAG luminances (0 black, 1 white): ``bg``, what
#: it is drawn on (its Vega SVG's background, which a Vega-Lite chart with no theme paints
#: white, over the page's backgrounds behind it; for a canvas, its corner pixel over them),
#: and ``ink``, the colour of its first axis label (SVG only; null when there is none).
CHART_COLOURS_JS = (
    "(selector) => {"
    + _COLOUR_JS
    + """
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    const view = root.querySelector('svg.marks, canvas');
    if (!view) { out.push(null); continue; }
    let bg = background(view);
    if (view.tagName === 'CANVAS') {
      const px = view.getContext('2d').getImageData(1, 1, 1, 1).data;
      bg = over([px[0], px[1], px[2], px[3] / 255], bg);
    }
    const label = view.querySelector('.role-axis-label text');
    const ink = label && parse(getComputedStyle(label).fill);
    const round = (v) => Math.round(v * 1000) / 1000;
    out.push({ bg: round(lum(bg)), ink: ink ? round(lum(ink)) : null });
  }
  return out;
}"""
)


def set_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab's theme and wait until its CSS applies."""
    light = "true" if "Light" in theme else "false"
    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: {theme!r}}})")
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeName === {theme!r} && document.body.dataset.jpThemeLight === '{light}'",
        timeout=20_000,
    )


def low_contrast(page: Any, selector: str, minimum: float = 4.5) -> tuple[int, list[dict]]:
    """How many text elements under ``selector`` were measured, and those below ``minimum``."""
    found = page.evaluate(CONTRAST_JS, selector)
    return len(found), [f for f in found if f["ratio"] < minimum]


def chart_colours(page: Any, selector: str) -> list[dict | None]:
    """``{"bg": luminance, "ink": luminance}`` of every chart matched by ``selector`` (None: not drawn)."""
    return page.evaluate(CHART_COLOURS_JS, selector)


def axe_serious(page: Any, selector: str) -> list[str]:
    """axe-core's serious and critical violations inside ``selector`` (none expected)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context={"include": [[selector]]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:4]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
