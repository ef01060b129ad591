"""What every page calls first: it keeps the page inside the app shell (streamlit_app.py), keeps
a busy server's garbage collector off the imported libraries, and hands freed memory back."""

from __future__ import annotations

import gc
import sys
import threading
import time

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

_frozen_lock = threading.Lock()
_frozen_pages: set[str] = set()


def ensure_app_shell() -> None:
    """Reroute a page that Streamlit ran outside `st.navigation`; freeze its imports once.

    Streamlit 1.67 quirk: with a `pages/` folder beside the entry script, the first session of
    a fresh server (a Community Cloud app waking up for the first student of the day) takes
    the old pages-folder route and runs `pages/shapes.py` directly: no page config, and a
    sidebar of file names. Once any run has called `st.navigation` the flag is off for good;
    here the page switches it off itself and reruns, so the shell takes over at once. (Page
    files are named after their URL paths, so that route finds every page: no "page not
    found".) A no-op on every normal run and under AppTest.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
    freeze_imports_once(sys._getframe(1).f_code.co_filename)  # the calling page script's path
    start_memory_trimmer()


def freeze_imports_once(name: str) -> None:
    """After a page's first imports, move every live object out of the garbage collector's reach.

    Streamlit collects all generations after every run (`runner.postScriptGC`), and a full
    collection walks every object torch, pandas and altair created at import: on a busy server
    that was over half of all CPU time (py-spy, issue #13). `gc.freeze()` moves what is alive now
    (the modules, for good) into a permanent generation that collections skip; what the pages
    allocate afterwards is still collected after every run. Reference counting still frees frozen
    objects (a tensor another session holds at this moment goes when that session drops it); only
    reference cycles caught in the freeze are kept, once. Done once per page script, the first
    time it runs, right after its imports, with a collection first so no garbage is frozen.
    """
    with _frozen_lock:
        if name in _frozen_pages:
            return
        _frozen_pages.add(name)
        gc.collect()
        gc.freeze()


_trimmer_started = False
TRIM_EVERY_S = 5.0


def start_memory_trimmer() -> None:
    """Once per server process: hand freed heap memory back to the system every few seconds.

    Thirty students computing at once leave glibc's heaps (one arena per script thread) full of
    freed space that it keeps for later: measured here, 30 distinct concat links left the server
    at 575–782 MiB resident although the caches hold ~14 MiB. `malloc_trim(0)` returns the free
    pages (it moves no allocation, but a page it hands back costs a page fault when next used:
    about 1.5 µs per 4 KiB page here, docs/timing.md "The allocator") and takes a few
    milliseconds; a daemon thread calls it every TRIM_EVERY_S seconds. Not glibc (e.g. macOS):
    nothing to do.
    """
    global _trimmer_started
    with _frozen_lock:
        if _trimmer_started:
            return
        _trimmer_started = True
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = [ctypes.c_size_t]

    def loop() -> None:
        while True:
            time.sleep(TRIM_EVERY_S)
            trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
