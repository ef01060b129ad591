"""Reference runs: a measured table and the machine it was measured on, stored as JSON in the repo.

The timing page draws one on arrival, labelled as that machine's, so a shared link shows timing
before anyone presses a button (the way the trained weights ship in core/weights/). They are
written by the project's own command, ``python -m core.timing … --json FILE``; the command, the
date, the CPU, the thread count, torch's version and the load average at the start are stored
with the table, because a shared machine's load is part of what its numbers mean.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from core.timing.runner import CSV_COLUMNS

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
FORMAT = 1


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def write_json(path: Path, table: pd.DataFrame, machine: dict, argv: Sequence[str], load_before: list[float] | None) -> None:
    """Store ``table`` and where it came from; NaN becomes null (JSON has no NaN)."""
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in table[CSV_COLUMNS].astype(object).to_dict(orient="records")]
    document = {
        "format": FORMAT,
        "command": "python -m core.timing " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_before": load_before, "load_average_after": load_average(),
                    "cpu_count": os.cpu_count()},
        "rows": records,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=_plain) + "\n")


def read_json(path: Path) -> dict:
    """{"command", "date", "machine", "table"}: the stored run, its table in CSV_COLUMNS order."""
    document = json.loads(Path(path).read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a reference run of format {FORMAT}")
    table = pd.DataFrame(document["rows"], columns=CSV_COLUMNS)
    if table["n_kv_heads"].isna().all():  # a run stored before grouped-query attention: no sharing
        table["n_kv_heads"] = table["n_heads"]
    for column in table.columns:  # null back to NaN in numeric columns
        if column not in ("variant", "device", "dtype", "verdict", "kind", "extra_bytes_from", "status", "note",
                          "malloc", "device_name", "torch", "clock", "round_ms"):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    for column in ("note", "round_ms"):
        table[column] = table[column].fillna("")
    return {"command": document["command"], "date": document["date"], "machine": document["machine"], "table": table}


def reference_path(device: str) -> Path:
    """Where the shipped reference run for a device lives (it may not exist, e.g. no GPU run yet)."""
    return REFERENCE_DIR / f"{device}.json"


def _plain(value):
    """numpy scalars to Python numbers for json."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
