"""What every page calls first: it keeps the page inside the app shell (streamlit_app.py), keeps
a busy server's garbage collector off the imported libraries, caps glibc's malloc arenas and the
libraries' worker threads to the cores it may use, and hands freed memory back."""

from __future__ import annotations

import gc
import os
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
    cap_malloc_arenas()
    match_library_threads()
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


# glibc's mallopt parameter numbers (malloc.h); the default cap is 8 arenas per *online* core.
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
MALLOC_ARENAS = 2
# Blocks from this size up get their own mapping, returned to the system when freed (glibc's
# default starts at 128 KiB but raises itself up to 32 MiB as big blocks are freed, after which
# a 2 MiB weight matrix lives in an arena and its pages stay with the process).
MMAP_THRESHOLD = 256 * 1024
_arenas_capped = False


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Once per server process: let glibc keep at most ``arenas`` malloc arenas, and hand every
    block of ``mmap_threshold`` bytes or more back to the system when it is freed. True if set here.

    glibc gives a thread that finds the heap busy an arena of its own, up to 8 per online core
    (the machine's cores, which a container's CPU limit does not narrow), and an arena's freed
    space stays with it: thirty script threads that computed at once leave thirty-odd arenas,
    each holding its share of their peak. With a cap, threads share arenas (more lock waits,
    which on one or two cores cost nothing measurable) and freed space is reused across
    sessions. The fixed mmap threshold returns a finished forward pass's big tensors at once
    instead of leaving them in an arena (each such block costs a page fault per 4 KiB page when
    it is next allocated). Measured in docs/class-load.md. ``MALLOC_ARENA_MAX`` and
    ``MALLOC_MMAP_THRESHOLD_`` in the environment do the same from the process's start; where one
    is set, it wins and that setting is left alone here. Not glibc: nothing to do.
    """
    global _arenas_capped
    with _frozen_lock:
        if _arenas_capped:
            return False
        _arenas_capped = True
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = False
    if arenas and not os.environ.get("MALLOC_ARENA_MAX"):
        done = bool(mallopt(M_ARENA_MAX, arenas)) or done
    if mmap_threshold and not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        done = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) or done
    return done


_threads_matched = 0  # the count used, once matched


def match_library_threads() -> int:
    """Once per server process: no more pyarrow or torch worker threads than ``ui.gate.cores()``.

    Both libraries size their pools by the cores they see, and a container whose CPU quota is one
    core may see all of its host's (its affinity lists them): then every DataFrame that
    st.dataframe converts starts a pool of pyarrow threads, and every torch product splits across
    threads that only queue for the one core's time (and each new thread may get a malloc arena
    of its own). A `taskset -c 0` server already sees one core, so this changes nothing there.
    torch's count is changed only while no ``core.device.torch_threads`` section is running
    (that function restores whatever count it found). Returns the count used.
    """
    global _threads_matched
    from ui.gate import cores

    with _frozen_lock:
        if _threads_matched:
            return _threads_matched
        n = _threads_matched = cores()
    import pyarrow as pa
    import torch

    from core import device

    if pa.cpu_count() > n:
        pa.set_cpu_count(n)
    with device._threads_lock:
        if not device._thread_requests and torch.get_num_threads() > n:
            torch.set_num_threads(n)
    return n


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
