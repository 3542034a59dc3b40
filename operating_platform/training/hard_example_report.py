"""Write a hard-example payload where people look: JSONL, a PNG contact sheet, wandb.

The JSONL holds everything but the pixels (one line per entry, hardest first); the
contact sheet shows the images at a readable size with rank, loss, episode, frame and
task underneath, so a glance at one PNG tells whether the hard samples share a visual
cause; `loss_plot` draws the loss over steps. wandb is optional and
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

_FONT, _FONT_SCALE, _LINE_H = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 16
_MIN_CELL_W = 192  # captions stay readable however small the tracked images are


def _json_entry(rank: int, entry: dict[str, Any]) -> dict[str, Any]:
    out = {"rank": rank}
    for key, value in entry.items():
        if key == "image":
            out["image_shape"] = list(value.shape) if value is not None else None
        else:
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def caption_lines(rank: int, entry: dict[str, Any]) -> list[str]:
    """`#1 loss 10.03 (step 40)`, then episode/frame and task when the sample has them."""
    lines = [f"#{rank} loss {entry['loss']:.3f} (step {entry['step']})"]
    where = [f"{label} {entry[key]}" for key, label in (("episode", "episode"), ("frame", "frame")) if key in entry]
    if where:
        lines.append(", ".join(where))
    for key in ("task", "prompt", "lang_action"):
        if entry.get(key):
            lines.append(str(entry[key]))
    return lines


def _wrapped(text: str, width_px: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if line and cv2.getTextSize(candidate, _FONT, _FONT_SCALE, 1)[0][0] > width_px:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def contact_sheet(entries: list[dict[str, Any]], columns: int = 4) -> np.ndarray:
    """Grid of the entries' images (uint8 RGB), each captioned with rank, loss, episode, frame and task."""
    if not entries:
        raise ValueError("contact_sheet: no entries")
    h, w = entries[0]["image"].shape[:2]
    if w < _MIN_CELL_W:  # upscale tiny images so the sheet can be read at all
        h, w = round(h * _MIN_CELL_W / w), _MIN_CELL_W
    columns = max(1, min(columns, len(entries)))
    rows = math.ceil(len(entries) / columns)
    captions = [[part for line in caption_lines(i + 1, e) for part in _wrapped(line, w - 8)] for i, e in enumerate(entries)]
    caption_h = _LINE_H * max(len(c) for c in captions) + 6
    cell_h, cell_w = h + caption_h, w + 4
    sheet = np.full((rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    for i, entry in enumerate(entries):
        r, c = divmod(i, columns)
        y, x = r * cell_h, c * cell_w + 2
        img = entry["image"]
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC if img.shape[1] < w else cv2.INTER_AREA)
        sheet[y : y + h, x : x + w] = img
        for n, line in enumerate(captions[i]):
            cv2.putText(sheet, line, (x + 2, y + h + _LINE_H * (n + 1)), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def loss_plot(steps: list[int], losses: list[float], size: tuple[int, int] = (360, 640)) -> np.ndarray:
    """A line plot of loss over steps (uint8 RGB) with labelled axes: enough to see a run learn or diverge."""
    if not steps:
        raise ValueError("loss_plot: no steps")
    height, width = size
    left, right, top, bottom = 70, 20, 30, 45
    img = np.full((height, width, 3), 255, np.uint8)
    lo, hi = float(np.min(losses)), float(np.max(losses))
    hi = hi if hi > lo else lo + 1.0
    s0, s1 = steps[0], steps[-1] if steps[-1] > steps[0] else steps[0] + 1

    def point(step: int, loss: float) -> tuple[int, int]:
        return (round(left + (step - s0) / (s1 - s0) * (width - left - right)),
                round(height - bottom - (loss - lo) / (hi - lo) * (height - top - bottom)))

    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        value = lo + frac * (hi - lo)
        y = point(s0, value)[1]
        cv2.putText(img, f"{value:.3g}", (4, y + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        step = round(s0 + frac * (s1 - s0))
        cv2.putText(img, str(step), (point(step, lo)[0] - 10, height - bottom + 18), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "loss over steps", (left, top - 10), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step", (width // 2, height - 8), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    line = np.array([point(st, lv) for st, lv in zip(steps, losses)], np.int32)
    cv2.polylines(img, [line], False, (31, 119, 180), 2, cv2.LINE_AA)
    return img


def write_png(image: np.ndarray, path: Path) -> Path:
    """An RGB image as a PNG, written atomically."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    write_bytes_atomic(path, png.tobytes())
    return path


def write_report(payload: dict[str, Any], out_dir: str | Path, columns: int = 4) -> dict[str, Path]:
    """hard_examples_step_XXXXXXXX.jsonl (+ .png when there are entries); returns the paths written."""
    out_dir = Path(out_dir)
    stem = f"hard_examples_step_{payload['step']:08d}"
    entries = payload["entries"]
    lines = "".join(json.dumps(_json_entry(i + 1, e), ensure_ascii=False) + "\n" for i, e in enumerate(entries))
    paths = {"jsonl": out_dir / f"{stem}.jsonl"}
    write_bytes_atomic(paths["jsonl"], lines.encode())
    if entries:
        paths["png"] = write_png(contact_sheet(entries, columns), out_dir / f"{stem}.png")
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
