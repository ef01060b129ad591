"""A class guessing in one room at once, over Streamlit's websocket (a measurement with a check).

    .venv/bin/python scripts/room_load_test.py [--sessions 30] [--page home] [--url http://127.0.0.1:8501]

Each simulated student speaks Streamlit's protocol as the browser does (see scripts/load_test.py):
it opens ``<page>?room=CODE``, finds the radio labelled "Predict:" among the elements the run
sent, and answers it by sending the radio's widget state in a rerun, exactly as a click does.
All sessions answer together. To exercise what the store must get right, every third student
first picks another option and then changes its mind (the count must move, not grow), and every
student sends its final answer twice (a rerun must not count twice).

Then a teacher session opens ``?room=CODE&teacher=1`` and reads the room's tally table from the
Arrow bytes of the dataframe the page sent; the script checks that it equals, option by option,
the final answers sent, and prints the timings: the time until the last student's vote run had
finished and the median of one vote run. Exit status 1 when the tally differs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.rooms import new_room_code  # noqa: E402
from scripts.load_test import rss_mib  # noqa: E402


class Session:
    """One websocket session of the app: runs, with widget states, read to the run's end."""

    def __init__(self, ws, page: str, query: dict, timeout_s: float):
        self.ws, self.page, self.query, self.timeout_s = ws, page, query, timeout_s

    async def run(self, widgets: list | None = None) -> list:
        """Ask for a run (with these widget states) and return the elements it sent."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = urlencode(self.query)
        msg.rerun_script.page_name = self.page
        for state in widgets or []:
            msg.rerun_script.widget_states.widgets.append(state)
        await self.ws.send(msg.SerializeToString())
        elements = []
        deadline = time.perf_counter() + self.timeout_s
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=max(0.1, deadline - time.perf_counter()))
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                if element.WhichOneof("type") == "exception":
                    raise RuntimeError(f"the page raised: {element.exception.message}")
                elements.append(element)
            elif kind == "script_finished" and fwd.script_finished in (
                    ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                return elements
            # FINISHED_EARLY_FOR_RERUN: the page asked for a rerun (e.g. the app shell); wait on


def _predict(elements: list):
    radios = [e.radio for e in elements if e.WhichOneof("type") == "radio" and e.radio.label.startswith("Predict:")]
    if not radios:
        raise RuntimeError("no radio labelled 'Predict:' on the page")
    return radios[0]


def _radio_state(radio, option: str):
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    return WidgetState(id=radio.id, string_value=option)


async def student(ws_url: str, page: str, room: str, i: int, start_gate: asyncio.Event,
                  loaded: asyncio.Semaphore, timeout_s: float) -> dict:
    import websockets

    async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=2**27, open_timeout=timeout_s) as ws:
        session = Session(ws, page, {"room": room}, timeout_s)
        radio = _predict(await session.run())
        options = list(radio.options)
        final = options[i % len(options)]
        plan = ([options[(i + 1) % len(options)]] if i % 3 == 0 else []) + [final, final]
        loaded.release()
        await start_gate.wait()  # the whole class answers at once
        start = time.perf_counter()
        runs = []
        for option in plan:
            t0 = time.perf_counter()
            await session.run([_radio_state(radio, option)])
            runs.append(time.perf_counter() - t0)
        return {"final": final, "options": options, "votes_sent": len(plan), "runs_s": runs,
                "done_s": time.perf_counter() - start}


async def teacher_tally(ws_url: str, page: str, room: str, timeout_s: float) -> dict[str, int]:
    import pyarrow as pa
    import websockets

    async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=2**27, open_timeout=timeout_s) as ws:
        elements = await Session(ws, page, {"room": room, "teacher": "1"}, timeout_s).run()
    for element in elements:
        if element.WhichOneof("type") == "dataframe":
            table = pa.ipc.open_stream(element.dataframe.arrow_data.data).read_all().to_pandas()
            if {"option", "count"} <= set(table.columns):
                return dict(zip(table["option"], (int(c) for c in table["count"])))
    raise RuntimeError("the teacher view sent no tally table")


async def a_class(ws_url: str, page: str, room: str, sessions: int, timeout_s: float) -> tuple[list[dict], float]:
    """All students open the page; once every page has loaded, they all answer at once."""
    gate, loaded = asyncio.Event(), asyncio.Semaphore(0)
    tasks = [asyncio.create_task(student(ws_url, page, room, i, gate, loaded, timeout_s)) for i in range(sessions)]
    for _ in range(sessions):
        waiter = asyncio.create_task(loaded.acquire())
        done, _pending = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:  # a student failed before answering: report it
            waiter.cancel()
            for task in done:
                task.result()
            await waiter
    start = time.perf_counter()
    gate.set()
    results = await asyncio.gather(*tasks)
    return list(results), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--page", default="home", help="URL path of a page with a checkpoint ('home' for /)")
    parser.add_argument("--room", default=None, help="room code (default: a fresh one)")
    parser.add_argument("--url", help="an already running server (else one is started here)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    page = "" if args.page == "home" else args.page
    room = args.room or new_room_code()
    server = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        from tests.browser.harness import Server

        log = ROOT / "artifacts" / "room-load-server.log"
        log.parent.mkdir(exist_ok=True)
        server = Server(log)
        url, pid = server.url, server.proc.pid
        print(f"server healthy after {server.startup_s:.1f} s")
    ws_url = url.replace("http", "ws", 1) + "/_stcore/stream"
    try:
        results, wall = asyncio.run(a_class(ws_url, page, room, args.sessions, args.timeout))
        tally = asyncio.run(teacher_tally(ws_url, page, room, args.timeout))
        options = results[0]["options"]
        sent = {o: sum(r["final"] == o for r in results) for o in options}
        runs = [s for r in results for s in r["runs_s"]]
        print(f"room {room} on /{page}: {args.sessions} students, {sum(r['votes_sent'] for r in results)} vote "
              f"runs sent ({sum(r['votes_sent'] == 3 for r in results)} changed their minds; every final "
              "answer sent twice)")
        print(f"last student's votes done after {max(r['done_s'] for r in results):.2f} s "
              f"(wall {wall:.2f} s); one vote run: median {statistics.median(runs) * 1e3:.0f} ms, "
              f"max {max(runs) * 1e3:.0f} ms" + (f"; server RSS {rss_mib(pid):.0f} MiB" if pid else ""))
        print(f"{'option':<16}{'sent':>6}{'tally':>7}")
        for option in options:
            print(f"{option:<16}{sent[option]:>6}{tally.get(option, 0):>7}")
        ok = all(tally.get(o, 0) == sent[o] for o in options) and sum(tally.values()) == args.sessions
        print("tally equals what was sent" if ok else "TALLY DIFFERS FROM WHAT WAS SENT")
    finally:
        if server is not None:
            if "Traceback" in server.log():
                print("the server logged a traceback; see", server.log_path)
            server.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
