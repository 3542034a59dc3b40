"""Write a hard-example payload where people look: JSONL, a PNG contact sheet, wandb.

The JSONL holds everything but the pixels (one line per entry, hardest first); the
contact sheet shows the images with rank and loss underneath, so a glance at one
PNG tells whether the hard samples share a visual cause. wandb is optional and
only used when it is importable, enabled and a run is active.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from operating_platform.dataset.format import write_bytes_atomic

_CAPTION_H = 14


def _json_entry(rank: int, entry: dict[str, Any]) -> dict[str, Any]:
    out = {"rank": rank}
    for key, value in entry.items():
        if key == "image":
            out["image_shape"] = list(value.shape) if value is not None else None
        else:
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def contact_sheet(entries: list[dict[str, Any]], columns: int = 8) -> np.ndarray:
    """Grid of the entries' images (uint8 RGB), each captioned '#rank loss'."""
    if not entries:
        raise ValueError("contact_sheet: no entries")
    h, w = entries[0]["image"].shape[:2]
    columns = max(1, min(columns, len(entries)))
    rows = math.ceil(len(entries) / columns)
    cell_h = h + _CAPTION_H
    sheet = np.full((rows * cell_h, columns * w, 3), 255, np.uint8)
    for i, entry in enumerate(entries):
        r, c = divmod(i, columns)
        y, x = r * cell_h, c * w
        img = entry["image"]
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        sheet[y : y + h, x : x + w] = img
        caption = f"#{i + 1} {entry['loss']:.2f}"
        cv2.putText(sheet, caption, (x + 2, y + h + _CAPTION_H - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def write_report(payload: dict[str, Any], out_dir: str | Path, columns: int = 8) -> dict[str, Path]:
    """hard_examples_step_XXXXXXXX.jsonl (+ .png when there are entries); returns the paths written."""
    out_dir = Path(out_dir)
    stem = f"hard_examples_step_{payload['step']:08d}"
    entries = payload["entries"]
    lines = "".join(json.dumps(_json_entry(i + 1, e), ensure_ascii=False) + "\n" for i, e in enumerate(entries))
    paths = {"jsonl": out_dir / f"{stem}.jsonl"}
    write_bytes_atomic(paths["jsonl"], lines.encode())
    if entries:
        ok, png = cv2.imencode(".png", cv2.cvtColor(contact_sheet(entries, columns), cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"could not encode the contact sheet for {stem}")
        paths["png"] = out_dir / f"{stem}.png"
        write_bytes_atomic(paths["png"], png.tobytes())
    return paths


def log_to_wandb(payload: dict[str, Any], enabled: bool = True) -> bool:
    """Log the payload to the active wandb run; False when wandb is absent, disabled or not running."""
    if not enabled:
        return False
    try:
        import wandb  # optional dependency
    except ImportError:
        return False
    if wandb.run is None:
        return False
    columns = ["rank", "loss", "step", "global_idx", "process_index", "text", "image"]
    table = wandb.Table(columns=columns)
    for i, e in enumerate(payload["entries"]):
        text = " | ".join(str(v) for k, v in e.items() if isinstance(v, str) and k != "image_error")
        table.add_data(i + 1, e["loss"], e["step"], e["global_idx"], e["process_index"], text, wandb.Image(e["image"]))
    wandb.log(
        {
            "hard_examples/table": table,
            "hard_examples/quantile_threshold": payload["quantile_threshold"],
            "hard_examples/total_samples": payload["total_samples"],
        },
        step=payload["step"],
    )
    return True
