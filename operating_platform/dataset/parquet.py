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

# The scalar of each feature dtype a LeRobot parquet column holds (ours write float32, int64, bool).
ARROW_SCALARS = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def arrow_type(ft: dict) -> pa.DataType | None:
    """A feature's parquet type: its scalar for shape [1], a fixed-size list of it for any other
    shape (flattened); None for a dtype no column holds (video, image) or a malformed feature."""
    scalar = ARROW_SCALARS.get(ft.get("dtype")) if isinstance(ft.get("dtype"), str) else None
    shape = ft.get("shape")
    if scalar is None or not (isinstance(shape, (list, tuple)) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        return None
    return scalar if list(shape) == [1] else pa.list_(scalar, int(np.prod(shape)))


def episode_timestamps(num_frames: int, fps: int) -> np.ndarray:
    return (np.arange(num_frames, dtype=np.float64) / fps).astype(np.float32)


def _column(key: str, values: np.ndarray, ft: dict) -> pa.Array:
    column_type = arrow_type(ft)
    if column_type is None:
        raise ValueError(f"feature {key!r} ({ft.get('dtype')} {ft.get('shape')}) has no parquet column type")
    if pa.types.is_fixed_size_list(column_type):
        flat = pa.array(np.asarray(values).reshape(-1), type=column_type.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, type=column_type)
    return pa.array(np.asarray(values).reshape(-1), type=column_type)


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
    arrays = [_column(k, columns[k], features[k]) for k in names]
    hf = {"info": {"features": {k: _hf_feature(features[k]) for k in names}}}
    schema = pa.schema([pa.field(k, a.type) for k, a in zip(names, arrays)], metadata={"huggingface": json.dumps(hf)})
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table_durably(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
