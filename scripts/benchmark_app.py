"""Benchmark the app as a user meets it (a measurement, not a test: it prints numbers).

    .venv/bin/python scripts/benchmark_app.py [--reruns 30] [--json PATH]

Measures, on this machine, in one run:
- time from `streamlit run` to a healthy server (/_stcore/health);
- time from navigation to the first painted title, and to the end of the first script run,
  for each page in headless Chromium (cold: the first visit of a fresh server);
- each page's warm rerun at its defaults, twice: the script alone on the server (AppTest, in
  this process) and the round trip a user sees (press "r" in Chromium, time until the script is
  done as the browser sees it, which includes the browser's own work on the same 2 cores),
  p50 and p95 over --reruns runs;
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

# URL path → page file (as registered in streamlit_app.py).
PAGES = {"": "home", "shapes": "shapes", "toy-sentence": "toy-sentence",
         "concat-vs-sum": "concat-vs-sum", "timing": "timing"}

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
                if not (ROOT / "pages" / f"{file}.py").exists():
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
            results["server_rss_mib_after_all_pages"] = round(_rss_mib(server.proc.pid), 1)
            browser.close()
    finally:
        server.stop()

    from streamlit.testing.v1 import AppTest

    for path, file in PAGES.items():
        if not (ROOT / "pages" / f"{file}.py").exists():
            continue
        at = AppTest.from_file(str(ROOT / "pages" / f"{file}.py"), default_timeout=120)
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
    print(f"server RSS after visiting every page: {results['server_rss_mib_after_all_pages']} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
