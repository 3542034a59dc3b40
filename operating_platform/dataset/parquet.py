"""The per-episode parquet table: column types exactly as LeRobot's v2.1 reader expects.

Vectors are fixed-size lists of float32, bookkeeping columns int64, the timestamp
float32 on the i/fps grid. The Hugging Face `datasets` feature description is
embedded in the schema metadata, as files written by LeRobot carry it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_ARROW_TYPES = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}


def episode_timestamps(num_frames: int, fps: int) -> np.ndarray:
    return (np.arange(num_frames, dtype=np.float64) / fps).astype(np.float32)


def _column(values: np.ndarray, ft: dict) -> pa.Array:
    arrow_type = _ARROW_TYPES[ft["dtype"]]
    length = int(np.prod(ft["shape"]))
    flat = pa.array(np.asarray(values).reshape(-1), type=arrow_type)
    if ft["shape"] == [1]:
        return flat
    return pa.FixedSizeListArray.from_arrays(flat, length)


def _hf_feature(ft: dict) -> dict:
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if ft["shape"] == [1]:
        return value
    return {"feature": value, "length": int(np.prod(ft["shape"])), "_type": "Sequence"}


def episode_table(columns: dict[str, np.ndarray], features: dict[str, dict]) -> pa.Table:
    """`columns` holds every non-video feature; the table keeps the features' order."""
    names = [k for k, ft in features.items() if ft["dtype"] not in ("video", "image", "string")]
    missing = set(names) - set(columns)
    if missing:
        raise ValueError(f"episode table is missing columns {sorted(missing)}")
    arrays = [_column(columns[k], features[k]) for k in names]
    hf = {"info": {"features": {k: _hf_feature(features[k]) for k in names}}}
    schema = pa.schema([pa.field(k, a.type) for k, a in zip(names, arrays)], metadata={"huggingface": json.dumps(hf)})
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table_durably(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
