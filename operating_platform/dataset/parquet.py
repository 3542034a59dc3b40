"""The per-episode parquet table: column types exactly as LeRobot's v2.1 reader expects.

Vectors are fixed-size lists of float32, bookkeeping columns int64, the timestamp
float32 on the i/fps grid. The Hugging Face `datasets` feature description is
embedded in the schema metadata, as files written by LeRobot carry it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .format import fsync_file
from .info import Feature, parquet_columns

# The scalar of each feature dtype a LeRobot parquet column holds (ours write float32, int64, bool).
ARROW_SCALARS = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def arrow_type(ft: Feature) -> pa.DataType | None:
    """A feature's parquet type: its scalar for shape [1], a fixed-size list of it for any other
    shape (flattened); None for a dtype no column holds (video, image) or none LeRobot stores."""
    scalar = ARROW_SCALARS.get(ft.dtype)
    if scalar is None:
        return None
    return scalar if ft.shape == (1,) else pa.list_(scalar, ft.width)


def episode_timestamps(num_frames: int, fps: int) -> np.ndarray:
    return (np.arange(num_frames, dtype=np.float64) / fps).astype(np.float32)


def _column(key: str, values: np.ndarray, ft: Feature) -> pa.Array:
    column_type = arrow_type(ft)
    if column_type is None:
        raise ValueError(f"feature {key!r} ({ft.dtype} {list(ft.shape)}) has no parquet column type")
    if pa.types.is_fixed_size_list(column_type):
        flat = pa.array(np.asarray(values).reshape(-1), type=column_type.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, type=column_type)
    return pa.array(np.asarray(values).reshape(-1), type=column_type)


def _hf_feature(ft: Feature) -> dict:
    value = {"dtype": ft.dtype, "_type": "Value"}
    if ft.shape == (1,):
        return value
    return {"feature": value, "length": ft.width, "_type": "Sequence"}


def episode_table(columns: dict[str, np.ndarray], features: Mapping[str, Feature]) -> pa.Table:
    """`columns` holds every parquet column of the features; the table keeps the features' order."""
    names = parquet_columns(features)
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
    fsync_file(path)
