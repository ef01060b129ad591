"""Browser-test harness: `streamlit run` on a free localhost port, driven by headless Chromium.

Playwright drives Debian's /usr/bin/chromium (no browser download). Where no Chromium or no
Playwright is found the tests skip, saying why; CI installs both, so there they always run.
Screenshots land in artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SHOTS = ARTIFACTS / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Server:
    """A running `streamlit run streamlit_app.py`; its log is kept to check for tracebacks."""

    def __init__(self, log_path: Path, extra_args: list[str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false", *(extra_args or [])],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )
        start = time.monotonic()
        while not _healthy(self.url):
            if self.proc.poll() is not None or time.monotonic() - start > 60:
                self.stop()
                raise RuntimeError(f"streamlit did not become healthy:\n{self.log()}")
            time.sleep(0.2)
        self.startup_s = time.monotonic() - start

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


# Installed in every page before Streamlit's own scripts run (context.add_init_script), so that no
# script run can start or finish unseen. It counts runs that went to "running" and came back, and
# notes when the state last changed: a test then waits for a run it caused to have *finished*,
# not for a `notRunning` that may hold before the first run (or a URL-settling rerun) has begun.
RUN_OBSERVER = """
(() => {
  if (window.__stRuns) return;
  const runs = window.__stRuns = {started: 0, finished: 0, state: null, changed: performance.now(), lastFinish: null};
  const look = () => {
    const app = document.querySelector('[data-testid=stApp]');
    const state = app ? app.getAttribute('data-test-script-state') : null;
    if (state === runs.state) return;
    if (state === 'running') runs.started += 1;
    else if (runs.state === 'running') { runs.finished += 1; runs.lastFinish = performance.now(); }
    runs.state = state; runs.changed = performance.now();
  };
  new MutationObserver(look).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['data-test-script-state'],
  });
  look();
})();
"""

# Settled: at least `after` + 1 runs finished, the app is idle, and has been for `quiet_ms`
# (Streamlit may rerun once more as URL-bound widgets settle; a quiet spell lets that start).
_SETTLED = """
([after, quiet]) => {
  const r = window.__stRuns;
  return !!r && r.finished > after && r.state === 'notRunning' && r.started <= r.finished
    && performance.now() - r.changed >= quiet;
}
"""


def new_context(browser, **kwargs):
    """A browser context whose pages all carry the run observer (use this, not browser.new_context)."""
    context = browser.new_context(**kwargs)
    context.add_init_script(RUN_OBSERVER)
    return context


def runs_finished(page) -> int:
    """How many script runs (full or fragment) this page has seen finish so far."""
    return int(page.evaluate("() => window.__stRuns ? window.__stRuns.finished : 0"))


def wait_ready(page, timeout_ms: int = 90_000, after: int | None = None, quiet_ms: int = 400) -> None:
    """Wait until a script run that started after ``after`` finished runs has finished, and the app
    has stayed idle for ``quiet_ms``. ``after=None`` means "since the page was loaded" (0).

    After an interaction, pass the count read *before* it (see `rerun_after`), or the wait can be
    satisfied by the run that drew the page before the click.
    """
    page.wait_for_function(_SETTLED, arg=[after or 0, quiet_ms], timeout=timeout_ms, polling=50)


class rerun_after:
    """``with rerun_after(page): page.click(...)`` waits for the run the click caused to finish."""

    def __init__(self, page, timeout_ms: int = 90_000):
        self.page, self.timeout_ms = page, timeout_ms

    def __enter__(self):
        self.before = runs_finished(self.page)
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            wait_ready(self.page, timeout_ms=self.timeout_ms, after=self.before)


def warm_up(browser, server: Server) -> None:
    """Open the home page once on a fresh server.

    Streamlit quirk (1.67): a `pages/` folder beside the entry script makes the *first* session
    of a server process take the old pages-folder route, where `/toy-sentence` (a URL path that
    is not a file name) is unknown: it pops "Page not found" over the right page. Once any
    session has run `st.navigation`, every later session is fine. Warming up here keeps that
    one-time artefact out of the tests, so that `open_app` can fail on any real missing page.
    """
    context = new_context(browser)
    page = context.new_page()
    page.goto(server.url)
    wait_ready(page)
    context.close()


def open_app(page, server: Server, path: str = "", query: dict | None = None) -> None:
    """Go to ``/<path>?<query>``, wait for the run to finish, and fail on any exception element
    or on Streamlit's "Page not found" dialog."""
    url = f"{server.url}/{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")
    page.goto(url)  # a new document: the observer starts counting from 0 again
    wait_ready(page)
    assert_no_exception(page)
    dialogs = page.locator("[role=dialog]", has_text="Page not found")
    assert dialogs.count() == 0, f"{url}: Streamlit says the page was not found"


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid=stException]")
    assert errors.count() == 0, f"exception on the page: {errors.first.inner_text()[:2000]}"


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    # Streamlit scrolls inside its own container, so grow the viewport to the content first.
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
        ".map(e => e.scrollHeight), 900)"
    )
    size = page.viewport_size or {"width": 1280, "height": 900}
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 100, 16_000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def charts_drawn(page) -> int:
    """How many Vega charts have drawn a canvas or svg."""
    return page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg.marks").count()
