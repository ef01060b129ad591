"""Benchmark the app as a user meets it (a measurement, not a test: it prints numbers).

    .venv/bin/python scripts/benchmark_app.py [--reruns 30] [--json PATH]

Measures, on this machine, in one run:
- time from `streamlit run` to a healthy server (/_stcore/health);
- time from navigation to the first painted title, and to the end of the first script run,
  for each page in headless Chromium (cold: the first visit of a fresh server);
- each page's warm rerun at its defaults, twice: the script alone on the server (AppTest, in
  this process, with the page compiled once as a server does) and the round trip a user sees
  (press "r" in Chromium, time until the script is done as the browser sees it, which includes
  the browser's own work on the same 2 cores), p50 and p95 over --reruns runs;
- each page's fragment: moving one control inside it (FRAGMENT_MOVES), from the keypress until the
  server finished that section's run and the page is idle, as Chromium sees it (p50 and p95);
- the server's resident memory after visiting every page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.harness import (  # noqa: E402
    CHROMIUM, CHROMIUM_ARGS, Server, new_context, runs_finished, wait_ready,
)
from ui.registry import PAGES as REGISTRY  # noqa: E402

# URL path → page file (relative to the root), from the one page registry.
PAGES = {page.url_path: page.file for page in REGISTRY}

# One control inside each page's fragment: (link that shows it, widget key, kind, two values).
# Moving it reruns only its section; the benchmark checks the server said so (a fragment run).
FRAGMENT_MOVES = {
    "shapes": ({"batch": "1", "seq": "5", "vocab": "10", "d_model": "16", "heads": "4", "step": "5"},
               "at_head", "slider", None),
    "toy-sentence": ({}, "token", "number", ("3", "1")),
    "concat-vs-sum": ({}, "coord", "number", ("17", "0")),
    "induction": ({}, "position", "slider", None),
    "timing": ({}, "budget", "number", ("3", "2")),
}

# A rerun as the reader sees it: from the keypress until the server said the run finished and the
# page has marked itself idle again (whichever came last; a fast run may never show "running").
SEEN = """() => {
  const r = window.__stRuns;
  const idle = r.idleAt !== null && r.idleAt > window.__t0 ? r.idleAt : r.lastFinish;
  return Math.max(r.lastFinish, idle) - window.__t0;
}"""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    log = ROOT / "artifacts" / "benchmark-server.log"
    log.parent.mkdir(exist_ok=True)
    server = Server(log)
    results: dict = {"healthy_s": round(server.startup_s, 2), "pages": {}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = new_context(browser, viewport={"width": 1280, "height": 900}).new_page()
            for path, file in PAGES.items():
                if not (ROOT / file).exists():
                    continue
                start = time.perf_counter()
                page.goto(f"{server.url}/{path}")
                page.wait_for_selector("[data-testid=stMain] h1", timeout=120_000)
                painted = time.perf_counter() - start
                wait_ready(page, timeout_ms=120_000)
                done = time.perf_counter() - start
                page.mouse.click(5, 450)  # focus the app's margin (not a widget) so "r" reaches it
                runs = []
                for _ in range(args.reruns + 2):  # two warm-ups, then the measured reruns
                    for _attempt in range(3):  # a keypress can land while the app is busy: press again
                        before = runs_finished(page)
                        page.evaluate("() => { window.__t0 = performance.now(); }")
                        page.keyboard.press("r")
                        try:
                            # A run that started after the press has finished (the harness's observer).
                            wait_ready(page, timeout_ms=20_000, after=before, quiet_ms=0)
                            break
                        except PlaywrightTimeout:
                            page.mouse.click(5, 450)
                    runs.append(page.evaluate(SEEN))
                    wait_ready(page, after=before)
                runs = runs[2:]
                results["pages"][path or "home"] = {
                    "first_title_s": round(painted, 2),
                    "first_run_done_s": round(done, 2),
                    "rerun_p50_ms": round(statistics.median(runs), 1),
                    "rerun_p95_ms": round(_percentile(runs, 0.95), 1),
                    "reruns": len(runs),
                }
            for path, (query, key, kind, values) in FRAGMENT_MOVES.items():
                if path not in results["pages"]:
                    continue
                from urllib.parse import urlencode

                page.goto(f"{server.url}/{path}?{urlencode(query)}")
                wait_ready(page, timeout_ms=120_000)
                widget = page.locator(f".st-key-{key}").first
                widget.scroll_into_view_if_needed()
                moves, fragment_runs = [], 0
                for i in range(args.reruns + 2):
                    before = runs_finished(page)
                    page.evaluate("() => { window.__t0 = performance.now(); }")
                    if kind == "number":
                        box = widget.locator("input").first
                        box.fill(values[i % 2])
                        box.press("Enter")
                    else:  # a slider: one step right, then back
                        widget.get_by_role("slider").first.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
                    wait_ready(page, timeout_ms=30_000, after=before, quiet_ms=0)
                    moves.append(page.evaluate(SEEN))
                    fragment_runs += page.evaluate("() => window.__stRuns.lastStatus") == 3
                    wait_ready(page, after=before)
                moves = moves[2:]
                results["pages"][path]["fragment_p50_ms"] = round(statistics.median(moves), 1)
                results["pages"][path]["fragment_p95_ms"] = round(_percentile(moves, 0.95), 1)
                results["pages"][path]["fragment_control"] = key
                results["pages"][path]["fragment_runs"] = f"{fragment_runs} of {args.reruns + 2}"
            results["server_rss_mib_after_all_pages"] = round(_rss_mib(server.proc.pid), 1)
            browser.close()
    finally:
        server.stop()

    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1 import local_script_runner

    # A server compiles a page once (its Runtime keeps one ScriptCache); AppTest makes a new cache
    # for every run and so compiles the page every time (5-7 ms for a long page here), a cost no
    # reader pays. One cache for all runs, as on the server.
    shared_cache = ScriptCache()
    local_script_runner.ScriptCache = lambda: shared_cache

    for path, file in PAGES.items():
        if not (ROOT / file).exists():
            continue
        at = AppTest.from_file(str(ROOT / file), default_timeout=120)
        at.run()
        at.run()
        times = []
        for _ in range(args.reruns):
            start = time.perf_counter()
            at.run()
            times.append((time.perf_counter() - start) * 1e3)
        results["pages"][path or "home"]["script_p50_ms"] = round(statistics.median(times), 1)
        results["pages"][path or "home"]["script_p95_ms"] = round(_percentile(times, 0.95), 1)

    print(f"server healthy after {results['healthy_s']} s")
    print(f"{'page':<15}{'title painted':>15}{'first run':>12}{'script p50':>13}{'script p95':>13}"
          f"{'browser p50':>13}{'browser p95':>13}")
    for name, r in results["pages"].items():
        print(f"{name:<15}{r['first_title_s']:>13} s{r['first_run_done_s']:>10} s"
              f"{r.get('script_p50_ms', float('nan')):>10} ms{r.get('script_p95_ms', float('nan')):>10} ms"
              f"{r['rerun_p50_ms']:>10} ms{r['rerun_p95_ms']:>10} ms")
    print(f"\n{'page':<15}{'fragment control':>18}{'p50':>10}{'p95':>10}   runs that were the fragment's alone")
    for name, r in results["pages"].items():
        if "fragment_p50_ms" in r:
            print(f"{name:<15}{r['fragment_control']:>18}{r['fragment_p50_ms']:>7} ms{r['fragment_p95_ms']:>7} ms"
                  f"   {r['fragment_runs']}")
    print(f"server RSS after visiting every page: {results['server_rss_mib_after_all_pages']} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
