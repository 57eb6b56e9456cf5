"""The tail every bench shares: machine and date, printed and optionally saved as JSON."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path


def report(rows: dict | list, out: str | None, **meta) -> None:
    """Print {"meta": machine, date and `meta`, "rows": rows} as JSON; also write it to `out` if given."""
    import torch

    meta = {"machine": f"{platform.machine()}, torch threads {torch.get_num_threads()}",
            "date": time.strftime("%Y-%m-%d"), **meta}
    text = json.dumps({"meta": meta, "rows": rows}, indent=1)
    print(text)
    if out:
        Path(out).write_text(text)
