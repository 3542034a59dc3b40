"""Track the highest-loss training samples and report them every interval.

Per step, `update` records the batch's per-sample losses (for the interval's loss
quantile and sample count) and `add_local_examples` offers the batch's samples to a
top-K buffer keyed by (process, step, global index). A sample entering the buffer
keeps a copy of its own raw image only (never the batch), so memory is bounded by
K images whatever the interval length; resizing/decoding happens lazily at report
time, and a sample whose image cannot be decoded is kept with a placeholder and the
error. Across processes, `merge_payloads` gives each process a fair share of the
report (round-robin) and fills the rest by loss.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from operating_platform.dataset.format import IMAGE_KEY_PREFIX

TextFn = Callable[[dict[str, Any], int], dict[str, str]]


@dataclass(order=False)
class HardExample:
    loss: float
    step: int
    global_idx: int
    process_index: int
    texts: dict[str, str] = field(default_factory=dict)
    dataset_index: int | None = None  # the sample's index in the dataset, when the batch carries "index"
    raw_image: Any = None  # this sample's own image (array or encoded bytes) until materialised
    image: np.ndarray | None = None  # resized uint8 HWC
    image_error: str | None = None

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.process_index, self.step, self.global_idx)

    def to_entry(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "step": self.step,
            "global_idx": self.global_idx,
            "process_index": self.process_index,
            "dataset_index": self.dataset_index,
            "image": self.image,
            "image_error": self.image_error,
            **self.texts,
        }


def default_text_fn(batch: dict[str, Any], row: int) -> dict[str, str]:
    """The task/prompt of the sample, when the batch has one."""
    for key in ("prompt", "task"):
        if key in batch:
            return {"prompt": str(batch[key][row])}
    return {}


def find_image_key(batch: dict[str, Any]) -> str | None:
    keys = sorted(k for k in batch if k.startswith(IMAGE_KEY_PREFIX) or k == "image")
    return keys[0] if keys else None


def to_display_image(raw: Any, resize_hw: tuple[int, int]) -> np.ndarray:
    """uint8 HWC RGB at resize_hw from uint8/float ([0,1] or [-1,1]) HWC/CHW arrays or encoded bytes."""
    if isinstance(raw, (bytes, bytearray)):
        decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError(f"undecodable image bytes ({len(raw)} bytes)")
        raw = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    img = np.asarray(raw)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.transpose(img, (1, 2, 0))
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"not an image: shape {img.shape}")
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        if not np.isfinite(img).all():
            raise ValueError("image has non-finite values")
        if img.min() < 0:  # [-1, 1] convention
            img = (img + 1.0) / 2.0
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    h, w = resize_hw
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def placeholder_image(resize_hw: tuple[int, int]) -> np.ndarray:
    """Mid-grey with a red cross: visibly 'no image' in a contact sheet."""
    h, w = resize_hw
    img = np.full((h, w, 3), 96, np.uint8)
    cv2.line(img, (0, 0), (w - 1, h - 1), (200, 30, 30), 1)
    cv2.line(img, (w - 1, 0), (0, h - 1), (200, 30, 30), 1)
    return img


class HardExampleTracker:
    def __init__(
        self,
        max_hard_examples: int = 50,
        resize_hw: tuple[int, int] = (64, 64),
        log_interval: int = 100,
        quantile: float = 0.9,
        image_key: str | None = None,
        text_fn: TextFn = default_text_fn,
        process_index: int = 0,
    ):
        if max_hard_examples <= 0:
            raise ValueError(f"HardExampleTracker: max_hard_examples must be positive, got {max_hard_examples}")
        if log_interval <= 0:
            raise ValueError(f"HardExampleTracker: log_interval must be positive, got {log_interval}")
        self.max_hard_examples = max_hard_examples
        self.resize_hw = tuple(resize_hw)
        self.log_interval = log_interval
        self.quantile = quantile  # reported: the loss level above which the interval's hardest samples lie
        self.image_key = image_key
        self.text_fn = text_fn
        self.process_index = process_index
        self._heap: list[tuple[float, tuple, HardExample]] = []  # min-heap: weakest entry first
        self._keys: set[tuple[int, int, int]] = set()
        self._interval_losses: list[np.ndarray] = []
        self.total_samples = 0  # over the run

    # ------------------------------------------------------------------ per step
    def update(self, per_sample_losses: Sequence[float] | np.ndarray) -> None:
        losses = np.asarray(per_sample_losses, dtype=np.float32).reshape(-1)
        self._interval_losses.append(losses)
        self.total_samples += losses.size

    def add_local_examples(
        self,
        step: int,
        batch: dict[str, Any],
        losses: Sequence[float] | np.ndarray,
        global_idx_base: int = 0,
        process_idx: int | None = None,
    ) -> int:
        """Offer the batch's samples to the buffer; returns how many entered."""
        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        process = self.process_index if process_idx is None else process_idx
        image_key = self.image_key or find_image_key(batch)
        added = 0
        for row in np.argsort(-losses, kind="stable"):
            loss = float(losses[row])
            full = len(self._heap) >= self.max_hard_examples
            if not np.isfinite(loss) or (full and loss < self._heap[0][0]):
                continue
            example = HardExample(loss, int(step), int(global_idx_base + row), int(process))
            if example.key in self._keys:
                continue
            example.texts = self.text_fn(batch, int(row))
            if "index" in batch:
                example.dataset_index = int(np.asarray(batch["index"])[row])
            example.raw_image = _own_copy(batch, image_key, int(row))
            self._push(example)
            added += 1
        return added

    def _push(self, example: HardExample) -> None:
        # ties broken by key so the buffer's contents never depend on insertion order
        item = (example.loss, tuple(-k for k in example.key), example)
        if len(self._heap) < self.max_hard_examples:
            heapq.heappush(self._heap, item)
        else:
            evicted = heapq.heappushpop(self._heap, item)[2]
            if evicted is example:
                return
            self._keys.discard(evicted.key)
        self._keys.add(example.key)

    # ------------------------------------------------------------------ reporting
    @property
    def buffer(self) -> list[HardExample]:
        """Entries sorted by loss, highest first."""
        return [item[2] for item in sorted(self._heap, reverse=True)]

    @property
    def keys(self) -> set[tuple[int, int, int]]:
        return set(self._keys)

    def materialise(self) -> None:
        """Resize (or decode) the images of the buffered entries and drop their raw copies."""
        for example in self.buffer:
            if example.raw_image is None and example.image is not None:
                continue
            try:
                if example.raw_image is None:
                    raise ValueError("the batch has no image for this sample")
                example.image = to_display_image(example.raw_image, self.resize_hw)
            except Exception as e:  # kept with a placeholder: the loss is still worth seeing
                example.image = placeholder_image(self.resize_hw)
                example.image_error = f"{type(e).__name__}: {e}"
            example.raw_image = None

    def is_log_step(self, step: int) -> bool:
        return step > 0 and step % self.log_interval == 0

    def log_if_ready(self, step: int, force: bool = False) -> dict[str, Any] | None:
        """At the end of each interval (or when forced): the payload, and the interval's stats
        are reset; otherwise None. None also when nothing was seen since the last payload."""
        if not (force or self.is_log_step(step)) or not self._interval_losses:
            return None
        self.materialise()
        all_losses = np.concatenate(self._interval_losses)
        payload = {
            "step": int(step),
            "process_index": self.process_index,
            "entries": [e.to_entry() for e in self.buffer],
            "quantile_threshold": float(np.quantile(all_losses, self.quantile)),
            "quantile": self.quantile,
            "total_samples": int(all_losses.size),
            "interval_losses": all_losses,  # lets a merge compute the exact quantile over all processes
        }
        self._interval_losses = []
        return payload


def _own_copy(batch: dict[str, Any], image_key: str | None, row: int) -> Any:
    if image_key is None or image_key not in batch:
        return None
    try:
        value = batch[image_key][row]
    except Exception:  # a malformed batch: reported when the image is materialised
        return None
    return value if isinstance(value, (bytes, bytearray)) else np.array(value, copy=True)


def merge_payloads(payloads: Sequence[dict[str, Any] | None], max_entries: int) -> dict[str, Any]:
    """One report from every process's payload (in process order).

    Each process first gets up to max_entries // len(payloads) of its hardest entries,
    taken round-robin so no process crowds out another; the remaining slots go to the
    highest losses left. Duplicate keys are dropped; the result is sorted by loss.
    """
    present = [p for p in payloads if p is not None]
    queues = [sorted(p["entries"], key=lambda e: -e["loss"]) for p in present]
    fair_share = max_entries // max(1, len(payloads))
    chosen: list[dict] = []
    seen: set[tuple] = set()

    def take(entry: dict) -> None:
        key = (entry["process_index"], entry["step"], entry["global_idx"])
        if key not in seen and len(chosen) < max_entries:
            seen.add(key)
            chosen.append(entry)

    for rank in range(fair_share):
        for q in queues:
            if rank < len(q):
                take(q[rank])
    rest = sorted((e for q in queues for e in q[fair_share:]), key=lambda e: -e["loss"])
    for entry in rest:
        take(entry)
    chosen.sort(key=lambda e: (-e["loss"], e["process_index"], e["step"], e["global_idx"]))
    losses = [p["interval_losses"] for p in present if len(p["interval_losses"])]
    quantile = present[0]["quantile"] if present else 0.9
    return {
        "step": max((p["step"] for p in present), default=0),
        "entries": chosen,
        "quantile_threshold": float(np.quantile(np.concatenate(losses), quantile)) if losses else float("nan"),
        "quantile": quantile,
        "total_samples": int(sum(p["total_samples"] for p in present)),
        "interval_losses": np.concatenate(losses) if losses else np.empty(0, np.float32),
        "process_count": len(payloads),
    }


def gather_hard_examples(collective, payload: dict[str, Any] | None, max_entries: int) -> dict[str, Any] | None:
    """Merged report on process 0 (None on the others). Every process must call it each interval,
    with None when it has nothing to report, so nobody waits for a payload that never comes."""
    gathered = collective.gather(payload)
    return None if gathered is None else merge_payloads(gathered, max_entries)
