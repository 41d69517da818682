"""A batch to monitor, read into the arrays the model was trained on.

A batch is in the format of the training source (``prepare.dataset``), labels optional:

- ``table``: a CSV or Parquet file, or a folder of them, with the training table's feature
  columns (raw: categorical columns as text, encoded with the *training* categories, so a
  category the model never saw is an error, not a silent new column); the label column is
  optional; other columns are ignored.
- ``npz`` and the bundled datasets (``mnist1d``, ``digits``): an .npz archive with ``x`` (as
  the prepared splits hold it) and optionally ``y``, the class names as the training source
  gave them (numbers for MNIST-1D and digits, whose classes are "0" to "9").
- ``images``: a folder of PNG/JPEG files (unlabelled), or one sub-folder per class (labelled).
- the inference log the served model writes (``serve.inference_log``): a folder of Parquet
  files (or one of them) with the schema's (encoded) feature columns and ``kdflow_*`` output columns; a
  column named as the training label, when someone joined the true labels in, is used.

Anything unreadable is a `DataError` naming the file, the column or the rows, as `prepare`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kdflow.config import PrepareConfig
from kdflow.data.sources import (
    IMAGE_SUFFIXES,
    SHOWN,
    DataError,
    _channels_first,
    _decode,
    _no_blanks,
    npz_shapes,
    numeric_label_names,
    read_table,
    refuse_unknown,
    within_budget,
)
from kdflow.data.splits import Schema

LOG_PREFIX = "kdflow_"  # the served model's own columns in the inference log
LOG_MARKER = "kdflow_label"


@dataclass(frozen=True)
class Batch:
    x: np.ndarray  # float32, [n, *sample shape], as the prepared splits hold it
    y: np.ndarray | None  # int64 class indices, or None when unlabelled
    origin: np.ndarray  # each row's name in the batch (a file and row number, an image file)
    kind: str  # "table", "npz", "images" or "inference log"

    def __len__(self) -> int:
        return len(self.x)


def _labels(values: pd.Series, classes: list[str], where: str) -> np.ndarray:
    """Class names (or numbers equal to a class name) as indices; an unknown class or a blank is an error."""
    if values.isna().any():
        rows = np.flatnonzero(values.isna().to_numpy())
        raise DataError(f"{where}: {rows.size} row(s) without a label, rows {rows[:SHOWN].tolist()}; label all rows or none")
    numeric = numeric_label_names(values)
    names = numeric[0] if numeric is not None else values.astype(str).str.strip()
    index = {c: i for i, c in enumerate(classes)}
    unknown = ~names.isin(list(index))
    if unknown.any():
        rows = np.flatnonzero(unknown.to_numpy())
        raise DataError(
            f"{where}: {rows.size} label(s) the model does not know, e.g. {sorted(set(names[unknown]))[:SHOWN]} in rows "
            f"{rows[:SHOWN].tolist()}; its classes are {classes}"
        )
    return names.map(index).to_numpy(np.int64)


def raw_columns(schema: Schema) -> list[str]:
    """The training table's feature columns before encoding: a one-hot column ``colour=red``
    comes from ``colour``; the order is the schema's, each column once."""
    out = []
    for name in schema.features:
        column, _, category = name.partition("=")
        out.append(column if category and column in schema.categories else name)
    return list(dict.fromkeys(out))


def _encode_table(frame: pd.DataFrame, schema: Schema, where: str) -> np.ndarray:
    """The raw feature columns as the schema's float32 features, with the training categories."""
    needed = raw_columns(schema)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: column(s) {missing[:10]} not found (the model's features); the batch has {list(frame.columns)[:20]}"
        )
    columns: dict[str, np.ndarray] = {}
    for column in needed:
        values = frame[column]
        if column in schema.categories:
            categories = schema.categories[column]
            _no_blanks(values, f"{where}: categorical column {column!r}")
            text = values.astype(str).str.strip()
            where_column = f"{where}: categorical column {column!r}"
            refuse_unknown(text, categories, where_column, "not seen in training", f"; known: {categories[:20]}")
            if f"{column}={categories[0]}" in schema.features:  # one-hot
                for category in categories:
                    columns[f"{column}={category}"] = (text == category).to_numpy(np.float32)
            else:  # ordinal codes
                columns[column] = pd.Categorical(text, categories=categories).codes.astype(np.float32)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        not_numbers = numbers.isna() & values.notna()
        if not_numbers.any():
            rows = np.flatnonzero(not_numbers.to_numpy())
            raise DataError(
                f"{where}: column {column!r} has {rows.size} value(s) that are not numbers, e.g. "
                f"{values.iloc[rows[:SHOWN]].tolist()} in rows {rows[:SHOWN].tolist()}"
            )
        array = numbers.to_numpy(np.float32)
        if not np.isfinite(array).all():
            rows = np.flatnonzero(~np.isfinite(array))
            raise DataError(
                f"{where}: column {column!r} has {rows.size} empty, NaN or infinite value(s), rows {rows[:SHOWN].tolist()}"
            )
        columns[column] = array
    return np.stack([columns[name] for name in schema.features], axis=1)


def _parquet_or_csv(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".parquet") and not p.name.startswith(".")
    )


def _log_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in sorted(path.rglob("*.parquet")) if not p.name.startswith(".")]


def is_inference_log(path: Path) -> bool:
    """Parquet written by the served model (a file, or a folder of them): it has the ``kdflow_label`` column."""
    import pyarrow.parquet as pq

    if path.suffix.lower() != ".parquet" and not path.is_dir():
        return False
    for file in _log_files(path)[:1]:
        try:
            return LOG_MARKER in pq.read_schema(file).names
        except (OSError, ValueError):
            return False
    return False


def _read_log(folder: Path, schema: Schema, shape: list[int]) -> Batch:
    files = _log_files(folder)
    frames = []
    for file in files:
        try:
            frame = pd.read_parquet(file)
        except (OSError, ValueError) as error:
            raise DataError(f"{file}: cannot be read as Parquet: {str(error).splitlines()[0]}") from None
        missing = [c for c in schema.features if c not in frame.columns]
        if missing:
            raise DataError(
                f"{file}: an inference log without the model's feature column(s) {missing[:10]}: another model's log?"
            )
        name = file.name if file == folder else str(file.relative_to(folder))
        frame["kdflow_origin"] = [f"{name}:{i}" for i in range(len(frame))]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    x = frame[schema.features].to_numpy(np.float32)
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x).all(1))
        raise DataError(
            f"{folder}: {rows.size} logged row(s) with NaN or infinite features, e.g. {frame['kdflow_origin'].iloc[rows[:SHOWN]].tolist()}"
        )
    y = (
        _labels(frame[schema.label], schema.classes, f"{folder}: label column {schema.label!r}")
        if schema.label in frame
        else None
    )
    return Batch(x.reshape(len(x), *shape), y, frame["kdflow_origin"].to_numpy(), "inference log")


def _read_tables(path: Path, schema: Schema) -> Batch:
    files = _parquet_or_csv(path) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no .csv or .parquet files inside")
    xs, ys, origins = [], [], []
    labelled: set[bool] = set()
    for file in files:
        frame = read_table(file)
        xs.append(_encode_table(frame, schema, str(file)))
        has = schema.label in frame.columns
        labelled.add(has)
        if has:
            ys.append(_labels(frame[schema.label], schema.classes, f"{file}: label column {schema.label!r}"))
        name = file.name if file == path else str(file.relative_to(path))
        origins.append(np.asarray([f"{name}:{i}" for i in range(len(frame))]))
    if len(labelled) > 1:
        raise DataError(f"{path}: some files have the label column {schema.label!r} and some do not; label all or none")
    y = np.concatenate(ys) if ys else None
    return Batch(np.concatenate(xs), y, np.concatenate(origins), "table")


def _read_npz(path: Path, schema: Schema, shape: list[int]) -> Batch:
    shapes = npz_shapes(path)
    if "x" not in shapes:
        raise DataError(f"{path}: expected an array x (and optionally y); found {sorted(shapes)}")
    with np.load(path, allow_pickle=False) as archive:
        x, labels = archive["x"], (archive["y"] if "y" in archive.files else None)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: x must be numeric, got dtype {x.dtype}")
    x = _channels_first(x) if len(shape) == 3 else x
    if list(x.shape[1:]) != shape:
        raise DataError(f"{path}: x has rows of shape {list(x.shape[1:])}; the model takes {shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))
        raise DataError(f"{path}: {rows.size} row(s) with NaN or infinite features, rows {rows[:SHOWN].tolist()}")
    y = None
    if labels is not None:
        if labels.shape != (len(x),):
            raise DataError(f"{path}: y has shape {list(labels.shape)}; x has {len(x)} rows")
        y = _labels(pd.Series(labels), schema.classes, f"{path}: array 'y'")
    return Batch(x, y, np.asarray([f"x[{i}]" for i in range(len(x))]), "npz")


def _read_images(folder: Path, cfg: PrepareConfig, schema: Schema, shape: list[int]) -> Batch:
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    loose = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if loose and classes:
        raise DataError(f"{folder}: holds both images and sub-folders; give loose images (unlabelled) or one folder per class")
    unknown = [c for c in classes if c not in schema.classes]
    if unknown:
        raise DataError(f"{folder}: class folder(s) {unknown[:SHOWN]} the model does not know; its classes are {schema.classes}")
    files = [(p, None) for p in loose] + [
        (p, schema.classes.index(c))
        for c in classes
        for p in sorted((folder / c).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(f"{folder}: no PNG or JPEG files")
    within_budget(cfg, folder, len(files) * int(np.prod(shape)), f"{len(files):,} images")
    size = (shape[1], shape[2])
    pixels = []
    for file, _ in files:
        try:
            array = _decode(file, cfg.images.mode, size, cfg.images.background, cfg.images.max_pixels)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
            raise DataError(f"{file}: cannot be decoded as an image ({error})") from None
        pixels.append(array if array.ndim == 3 else array[..., None])
    x = np.ascontiguousarray(np.stack(pixels).transpose(0, 3, 1, 2))
    y = np.asarray([label for _, label in files], dtype=np.int64) if classes else None
    return Batch(x, y, np.asarray([str(p.relative_to(folder)) for p, _ in files]), "images")


def load_batch(path: Path, cfg: PrepareConfig, schema: Schema, sample_shape: list[int]) -> Batch:
    """The batch at `path` as float32 arrays shaped as the training data; raises `DataError`."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if is_inference_log(path):
        batch = _read_log(path, schema, sample_shape)
    elif cfg.dataset == "table":
        batch = _read_tables(path, schema)
    elif cfg.dataset == "images":
        batch = _read_images(path, cfg, schema, sample_shape)
    elif path.is_file() and path.suffix.lower() == ".npz":
        batch = _read_npz(path, schema, sample_shape)
    else:
        raise DataError(f"{path}: a batch for prepare.dataset = {cfg.dataset} is an .npz archive with x (and optionally y)")
    if len(batch) == 0:
        raise DataError(f"{path}: no rows")
    return batch
