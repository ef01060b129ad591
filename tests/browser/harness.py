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
# script run can finish unseen. Runs are counted where the server says so: every ForwardMsg that
# carries `script_finished` (field 6 of the message, read off the websocket's bytes) is one finished
# run, full or fragment; "finished early for a rerun" (value 2) is not, since another run follows.
# The DOM's `data-test-script-state` only says whether the app is idle now: a fast run can go to
# "running" and back inside one React commit, so counting its changes misses runs (seen with
# cached fragment reruns). A test then waits for a run *it caused* to have finished, not for a
# `notRunning` that may hold before the first run (or a URL-settling rerun) has begun.
RUN_OBSERVER = r"""
(() => {
  if (window.__stRuns) return;
  const runs = window.__stRuns = {finished: 0, state: null, changed: performance.now(), lastFinish: null, idleAt: null};
  const look = () => {
    const app = document.querySelector('[data-testid=stApp]');
    const state = app ? app.getAttribute('data-test-script-state') : null;
    if (state !== runs.state) {
      runs.state = state; runs.changed = performance.now();
      if (state === 'notRunning') runs.idleAt = runs.changed;
    }
  };
  new MutationObserver(look).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['data-test-script-state'],
  });
  look();

  const varint = (bytes, pos) => {
    let value = 0, scale = 1, b;
    do { b = bytes[pos++]; value += (b & 0x7f) * scale; scale *= 128; } while (b & 0x80 && pos < bytes.length);
    return [value, pos];
  };
  const scriptFinished = (bytes) => {  // the top-level field 6 (a varint) of a ForwardMsg, or null
    let pos = 0;
    while (pos < bytes.length) {
      let tag, n; [tag, pos] = varint(bytes, pos);
      const field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) { [n, pos] = varint(bytes, pos); if (field === 6) return n; }
      else if (wire === 2) { [n, pos] = varint(bytes, pos); pos += n; }
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else return null;
    }
    return null;
  };
  const onBytes = (buffer) => {
    runs.changed = performance.now();
    const status = scriptFinished(new Uint8Array(buffer));
    if (status !== null && status !== 2) {
      runs.finished += 1; runs.lastFinish = performance.now(); runs.lastStatus = status;  // 3: a fragment's run
    }
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        if (e.data instanceof ArrayBuffer) onBytes(e.data);
        else if (e.data instanceof Blob) e.data.arrayBuffer().then(onBytes);
      });
    }
  };
})();
"""

# Settled: more than `after` runs finished, the app is idle, and nothing has arrived or changed for
# `quiet_ms` (Streamlit may rerun once more as URL-bound widgets settle; a quiet spell lets it start).
_SETTLED = """
([after, quiet]) => {
  const r = window.__stRuns;
  return !!r && r.finished > after && r.state === 'notRunning' && performance.now() - r.changed >= quiet;
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
    """Open the home page once on a fresh server, so the first test does not pay for importing
    torch and the libraries (a fresh server's own first request is tests/test_cold_start.py's job).
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


def dark_context(browser, **kwargs):
    """A context whose pages ask for the dark theme (Streamlit follows the system's colour scheme)."""
    return new_context(browser, color_scheme="dark", **{"viewport": {"width": 1280, "height": 900}, **kwargs})


def element_screenshot(locator, name: str) -> Path:
    """A screenshot of one element (e.g. a checkpoint) into artifacts/screenshots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    return path
