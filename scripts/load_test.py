"""A class on one server: N sessions open a link at once (a measurement, not a test).

    .venv/bin/python scripts/load_test.py [--pages concat-vs-sum,shapes] [--sessions 30]
        [--distinct] [--server-arg=--runner.postScriptGC=false] [--url http://127.0.0.1:8501]
        [--server-cores 0] [--server-env MALLOC_ARENA_MAX=2] [--json artifacts/load.json]
    .venv/bin/python scripts/load_test.py --imports     # RSS after each heavy import, fresh python

Each simulated student speaks Streamlit's own websocket protocol (`/_stcore/stream`), as the
browser does, with no browser on the same cores: it connects, sends one `BackMsg.rerun_script`
(the link's query string and page name), and reads `ForwardMsg`s until the run reports
`script_finished`. Nothing is rendered, so the figures are the server's share of a view.

For every page: one warm-up session (so cached computations are warm, as when a teacher has
opened the link first), then ``--sessions`` connections opened together. Printed per page: the
time until the last session's run finished, the median, how many runs showed an exception or
"page not found", and the server's resident memory (with its children) right afterwards and
again once the class has been quiet for ``--settle`` seconds. With
``--distinct`` every session gets its own link (seed and heads varied), so nothing is cached.

A class guessing together in one room (checkpoints, issue 21) is scripts/room_load_test.py.

Without ``--url`` the script starts its own `streamlit run` on a free localhost port (and passes
``--server-arg`` options to it), so each configuration is measured on a fresh server.

One-core mode (``--server-cores 0``): the server starts pinned to the listed cores, as
`taskset -c 0` would (it inherits this process's CPU affinity at fork, and every thread it makes
inherits it from its parent), and this client then moves to the remaining cores, so the class's
own websocket work does not compete with the server: the smallest Community Cloud container has
one core. A background thread samples the server's resident memory (with its children) every
``--sample-ms`` while a class is open and reports its PEAK, alongside the reading right after the
class and after ``--settle``. Every row also records the machine's load average (a busy machine
inflates wall-clock figures; memory and byte counts are far less affected) and the bytes the
server sent per session (what it serialised for one view).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ui.registry import PAGES  # noqa: E402

# The i-th distinct link of each page (with --distinct); otherwise every session opens the page bare.
DISTINCT = {
    "shapes": lambda i: {"seq": str(8 + i), "heads": str([1, 2, 4, 8, 16][i % 5])},
    "toy-sentence": lambda i: {"sentence": f"student {i} reads this sentence", "seed": str(i)},
    "concat-vs-sum": lambda i: {"seed": str(i), "heads": str([1, 2, 4, 8, 16][i % 5])},
    "induction": lambda i: {"seed": str(i)},
    "timing": lambda i: {"seq": str(8 * (1 + i % 8)), "batch": str(1 + i % 4)},
}


def rss_mib(pid: int, with_children: bool = True) -> float:
    """Resident memory of a process (and, recursively, its children) in MiB, from /proc."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            if with_children:
                for task in Path(f"/proc/{p}/task").iterdir():
                    children = (task / "children").read_text().split()
                    pids += [int(c) for c in children]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process and its reaped children have used, from /proc.

    On a pinned server the CPU time a class costs is the wall time it would take on a quiet core
    (less any idle waiting): a figure a busy machine inflates far less than the wall clock.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """Samples a process tree's resident memory in a background thread; ``peak`` is the largest reading.

    The reading after a class misses what the server held while thirty script threads were
    running; a container is killed at its peak, so that is the figure to compare with its limit.
    """

    def __init__(self, pid: int, every_s: float = 0.05):
        self.pid, self.every_s, self.peak, self.samples = pid, every_s, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self.samples += 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


def cores_of(spec: str) -> set[int]:
    """'0' or '0,2' or '0-1' (taskset's list form) as a set of core ids."""
    cores: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return cores


def import_footprint(modules: list[str]) -> list[dict]:
    """RSS of a fresh python after each import in turn (each row includes the ones before it).

    Run in a child interpreter so that nothing this script imported is counted.
    """
    code = (
        "import json, sys, time\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024\n"
        "rows = [{'module': '(python)', 'rss_mib': rss(), 'import_s': 0.0}]\n"
        "for m in sys.argv[1:]:\n"
        "    t = time.perf_counter(); __import__(m)\n"
        "    rows.append({'module': m, 'rss_mib': rss(), 'import_s': time.perf_counter() - t})\n"
        "print(json.dumps(rows))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    for before, row in zip(rows, rows[1:]):
        row["added_mib"] = row["rss_mib"] - before["rss_mib"]
    return rows


async def one_session(ws_url: str, page: str, query: dict, timeout_s: float) -> dict:
    """Open a session, ask for one run of ``page?query``, wait for it to finish."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    start = time.perf_counter()
    result = {"done_s": None, "exceptions": 0, "page_not_found": False, "elements": 0, "bytes": 0, "error": None}
    try:
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=2**27,
                                      open_timeout=timeout_s) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string = urlencode(query)
            msg.rerun_script.page_name = page
            await ws.send(msg.SerializeToString())
            deadline = start + timeout_s
            while True:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.perf_counter()))
                result["bytes"] += len(raw)
                fwd = ForwardMsg()
                fwd.ParseFromString(raw)
                kind = fwd.WhichOneof("type")
                if kind == "delta":
                    result["elements"] += 1
                    if fwd.delta.WhichOneof("type") == "new_element" and \
                            fwd.delta.new_element.WhichOneof("type") == "exception":
                        result["exceptions"] += 1
                elif kind == "page_not_found":
                    result["page_not_found"] = True
                elif kind == "script_finished":
                    if fwd.script_finished in (ForwardMsg.FINISHED_SUCCESSFULLY,
                                               ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                        result["done_s"] = time.perf_counter() - start
                        return result
                    # FINISHED_EARLY_FOR_RERUN: the page asked for a rerun (e.g. the app shell); wait on
    except Exception as exc:  # noqa: BLE001 - a measurement reports every failure, it does not stop
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


async def class_of(ws_url: str, page: str, queries: list[dict], timeout_s: float) -> list[dict]:
    return await asyncio.gather(*(one_session(ws_url, page, q, timeout_s) for q in queries))


def measure(url: str, pid: int | None, pages: list[str], sessions: int, distinct: bool,
            timeout_s: float, round_: int = 0, settle_s: float = 0.0, sample_s: float = 0.05) -> list[dict]:
    ws_url = url.replace("http", "ws", 1) + "/_stcore/stream"
    rows = []
    for page in pages:
        nth = DISTINCT.get(page, lambda i: {})
        asyncio.run(class_of(ws_url, page, [{}], timeout_s))  # the teacher opens it first
        # Distinct links are new in every round, so a long run keeps adding cache entries.
        queries = [nth(i + round_ * sessions) for i in range(sessions)] if distinct else [{}] * sessions
        sampler = PeakRss(pid, sample_s) if pid else contextlib.nullcontext()
        cpu_before = cpu_s(pid) if pid else None
        start = time.perf_counter()
        with sampler:
            results = asyncio.run(class_of(ws_url, page, queries, timeout_s))
        wall = time.perf_counter() - start
        cpu_used = cpu_s(pid) - cpu_before if pid else None
        done = [r["done_s"] for r in results if r["done_s"] is not None]
        rows.append({
            "page": page or "home",
            "sessions": sessions,
            "distinct": distinct,
            "last_done_s": round(max(done), 2) if done else None,
            "median_done_s": round(statistics.median(done), 2) if done else None,
            "wall_s": round(wall, 2),
            "finished": len(done),
            "exceptions": sum(r["exceptions"] for r in results),
            "page_not_found": sum(r["page_not_found"] for r in results),
            "errors": sorted({r["error"] for r in results if r["error"]}),
            "rss_mib": round(rss_mib(pid), 1) if pid else None,
            "rss_peak_mib": round(sampler.peak, 1) if pid else None,
            "server_cpu_s": round(cpu_used, 2) if pid else None,
            "bytes_per_session": round(statistics.median(r["bytes"] for r in results)),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        })
        if pid and settle_s:
            time.sleep(settle_s)  # the class has gone quiet: what does the server keep?
            rows[-1]["rss_settled_mib"] = round(rss_mib(pid), 1)
    return rows


@contextlib.contextmanager
def pinned_server_start(server_cores: str | None, env: list[str]):
    """Inside: this process runs on ``server_cores`` with ``env`` set, so a server started here
    inherits both; afterwards this process (the client) moves to the other cores. No-op if neither."""
    saved_env = {k: os.environ.get(k) for k, _, _ in (e.partition("=") for e in env)}
    for k, _, v in (e.partition("=") for e in env):
        os.environ[k] = v
    all_cores = os.sched_getaffinity(0)
    if server_cores is not None:
        server = cores_of(server_cores) & all_cores
        if not server:
            raise SystemExit(f"--server-cores {server_cores}: none of them is available ({sorted(all_cores)})")
        os.sched_setaffinity(0, server)
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if server_cores is not None:
            client = all_cores - cores_of(server_cores)
            os.sched_setaffinity(0, client or all_cores)  # one-core machine: share it (and say so)
            print(f"server on cores {sorted(cores_of(server_cores) & all_cores)}, client on {sorted(client or all_cores)}")


def print_imports(modules: list[str]) -> None:
    print(f"{'after importing':<40}{'RSS MiB':>9}{'added':>8}{'seconds':>9}")
    for row in import_footprint(modules):
        print(f"{row['module']:<40}{row['rss_mib']:>9.1f}{row.get('added_mib', 0.0):>8.1f}{row['import_s']:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", default=",".join(p.name for p in PAGES if p.exists),
                        help="comma-separated URL paths ('home' for /); default: every page in ui/registry.py")
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--distinct", action="store_true", help="a different link for every session")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole class this many times")
    parser.add_argument("--url", help="an already running server (else one is started here)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `streamlit run` option, e.g. --server-arg=--runner.postScriptGC=false")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds to wait after each class before reading the memory again")
    parser.add_argument("--server-cores", metavar="LIST",
                        help="pin the started server to these cores (taskset's form, e.g. 0); the client takes the rest")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the started server, e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--sample-ms", type=float, default=50.0, help="how often the peak-RSS sampler reads /proc")
    parser.add_argument("--json", type=Path, help="also write every row (with load averages) to this file")
    parser.add_argument("--then-distinct", metavar="PAGES", default="",
                        help="after the classes above, on the same server: a class of distinct links on these pages "
                             "(the issue's sequence: every page visited first, then 30 distinct concat links)")
    parser.add_argument("--imports", nargs="?", const="torch,numpy,pandas,pyarrow,altair,streamlit",
                        metavar="MODULES", help="print the RSS after each import in a fresh python, and stop")
    args = parser.parse_args()
    if args.imports:
        print_imports(args.imports.split(","))
        return

    pages = ["" if p == "home" else p for p in args.pages.split(",") if p]
    server = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        from tests.browser.harness import Server

        log = ROOT / "artifacts" / "load-server.log"
        log.parent.mkdir(exist_ok=True)
        with pinned_server_start(args.server_cores, args.server_env):
            server = Server(log, extra_args=args.server_arg)
        url, pid = server.url, server.proc.pid
        print(f"server healthy after {server.startup_s:.1f} s, RSS {rss_mib(pid):.0f} MiB "
              f"({' '.join(args.server_arg + args.server_env) or 'default settings'})")
    try:
        print(f"{'page':<15}{'sessions':>9}{'last done':>11}{'median':>9}{'finished':>10}"
              f"{'exceptions':>12}{'not found':>11}{'RSS MiB':>9}{'settled':>9}{'peak':>8}{'KiB/view':>10}{'CPU s':>7}  load avg", flush=True)
        all_rows = []
        then = [("" if p == "home" else p) for p in args.then_distinct.split(",") if p]
        classes = [c for round_ in range(args.rounds)
                   for c in [(pages, args.distinct, round_)] + ([(then, True, round_)] if then else [])]
        for class_pages, distinct, round_ in classes:
            for row in measure(url, pid, class_pages, args.sessions, distinct, args.timeout, round_, args.settle,
                               args.sample_ms / 1000):
                all_rows.append({**row, "round": round_, "server_cores": args.server_cores,
                                 "server_args": args.server_arg, "server_env": args.server_env})
                print(f"{row['page']:<15}{row['sessions']:>9}{row['last_done_s'] or float('nan'):>9} s"
                      f"{row['median_done_s'] or float('nan'):>7} s{row['finished']:>10}{row['exceptions']:>12}"
                      f"{row['page_not_found']:>11}{row['rss_mib'] or float('nan'):>9}"
                      f"{row.get('rss_settled_mib') or float('nan'):>9}{row['rss_peak_mib'] or float('nan'):>8}"
                      f"{row['bytes_per_session'] / 1024:>10.0f}{row['server_cpu_s'] or float('nan'):>7}"
                      f"  {' '.join(map(str, row['loadavg']))}"
                      + (f"  errors: {row['errors']}" if row["errors"] else ""), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(all_rows, indent=1))
    finally:
        if server is not None:
            if "Traceback" in server.log():
                print("the server logged a traceback; see", server.log_path)
            server.stop()


if __name__ == "__main__":
    main()
