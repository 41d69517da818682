"""Where the data comes from: the bundled datasets and the user's own files, read into arrays.

Each source gives features ``x`` (float32: ``[n, features]`` for signals and tables,
``[n, channels, height, width]`` for images), integer labels ``y`` (indices into `classes`),
and, when the user gave them, each row's split and group. Anything unreadable or malformed is a
`DataError` naming the file, the column or the rows, before any training starts.

- ``mnist1d``: generated offline by its reference generator.
- ``digits``: scikit-learn's 8x8 digits, bundled with scikit-learn (no download).
- ``table``: a CSV or Parquet file; numeric features, a label column, categorical columns
  encoded by a declared rule (``onehot`` or ``ordinal``), optional split and group columns.
- ``npz``: arrays ``x`` and ``y`` (optional ``split`` and ``groups``), or ``x_train``/``y_train``,
  ``x_val``/``y_val``, ``x_test``/``y_test`` for splits given as files; ``x`` of 3 or 4 axes
  holds images, channels first or last.
- ``images``: one folder per class of PNG or JPEG files, decoded with Pillow, optionally resized.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdflow.config import PrepareConfig
from kdflow.data.splits import Schema, Split, content_ids, feature_names, holdout_indices, make_mnist1d, merge_groups
from kdflow.errors import KdflowError

SPLIT_NAMES = ("train", "val", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SHOWN = 5  # rows or files quoted per problem
GIB = 1 << 30


class DataError(KdflowError, ValueError):
    """The input data cannot be used; the message names the file, column or rows."""


@dataclass(frozen=True)
class Loaded:
    x: np.ndarray
    y: np.ndarray  # int64 indices into `classes`
    classes: list[str]
    features: list[str] | None = None  # names of the flattened features; None: x0, x1... or pixels
    label: str = "label"
    split: np.ndarray | None = None  # per row: "train", "val" or "test", when the user split
    groups: np.ndarray | None = None  # per row: a group id (patient, user...), when declared
    origin: np.ndarray | None = None  # per row: its name in the source; default: its row number
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical columns: categories in code order
    shared_scale: bool = False  # pixels: every feature on one scale (see `Schema.shared_scale`)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # columns kept for slices (`Split.attributes`)

    def rows(self, index: np.ndarray) -> Split:
        """These rows as a split, each still named as in the source."""
        origin = self.origin if self.origin is not None else np.arange(len(self.y))
        return Split(self.x, self.y, self.groups, origin, self.attributes).rows(index)

    @property
    def schema(self) -> Schema:
        """What the arrays mean, as a `Schema`; unnamed features get `feature_names` of the sample shape."""
        return Schema(
            self.features or feature_names(self.x.shape[1:]), self.label, self.classes, self.categories, self.shared_scale
        )


def numeric_label_names(values: pd.Series) -> tuple[pd.Series, pd.Series] | None:
    """Labels that are all numbers, as class names (3.0 is class "3") and as numbers; None
    when any is not a number."""
    numbers = pd.to_numeric(values, errors="coerce")
    if not numbers.notna().all():
        return None
    return numbers.map(lambda v: str(int(v)) if float(v).is_integer() else str(v)), numbers


def refuse_unknown(values: pd.Series, allowed: list[str], where: str, what: str, after: str = "") -> None:
    """Raise `DataError` when `values` hold anything outside `allowed`: how many, which (a few),
    and in which rows; `what` says what they are outside of."""
    unknown = ~values.isin(allowed)
    if unknown.any():
        rows = np.flatnonzero(unknown.to_numpy())
        raise DataError(
            f"{where} has {rows.size} value(s) {what}: {sorted(set(values[unknown]))[:SHOWN]} in rows "
            f"{rows[:SHOWN].tolist()}{after}"
        )


def _labels(values: pd.Series | np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    values = pd.Series(values)
    if values.isna().any():
        rows = np.flatnonzero(values.isna().to_numpy())[:SHOWN].tolist()
        raise DataError(f"{where}: {int(values.isna().sum())} row(s) without a label, rows {rows}")
    if (numeric := numeric_label_names(values)) is not None:  # numeric labels: numeric order
        names, numbers = numeric
        order = dict(zip(names, numbers, strict=True))
        classes = sorted(set(names), key=lambda name: order[name])
    else:
        names = values.astype(str)
        classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return names.map(index).to_numpy(np.int64), classes


def _no_blanks(column: pd.Series, where: str) -> None:
    blank = column.isna() | (column.astype("string").str.strip() == "")
    if blank.any():
        rows = np.flatnonzero(blank.to_numpy())
        raise DataError(f"{where}: {rows.size} empty cell(s), rows {rows[:SHOWN].tolist()}")


def _split_values(values: pd.Series, where: str) -> np.ndarray:
    _no_blanks(values, where)
    values = values.astype(str).str.strip().str.lower()
    bad = ~values.isin(SPLIT_NAMES)
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())[:SHOWN].tolist()
        raise DataError(
            f"{where}: split values must be train, val or test; got {sorted(set(values[bad]))[:SHOWN]} in rows {rows}"
        )
    return values.to_numpy()


def read_table(path: Path) -> pd.DataFrame:
    """A .csv (UTF-8) or .parquet file as a frame; raises `DataError` when it is missing, of another type,
    unreadable or without rows."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"{path}: a table must be .csv or .parquet")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, OSError, ValueError) as error:
        raise DataError(f"{path}: cannot be read as a table: {str(error).splitlines()[0]}") from None
    if frame.empty:
        raise DataError(f"{path}: no rows (columns: {list(frame.columns)})")
    return frame


def _encode(frame: pd.DataFrame, rules: dict[str, str | list[str]], path: Path) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Categorical columns by their declared rule: one-hot or ordinal codes, the categories in
    sorted order (so the same data always gives the same columns) or in the declared order.
    Returns the encoded frame and each column's categories, in code order."""
    out = frame.copy()
    levels = {}
    for column, rule in rules.items():
        _no_blanks(out[column], f"{path}: categorical column {column!r}")
        values = out.pop(column).astype(str).str.strip()
        categories = sorted(values.unique())
        if isinstance(rule, list):
            refuse_unknown(values, rule, f"{path}: categorical column {column!r}", f"outside its declared order {rule}")
            categories, rule = rule, "ordinal"
        levels[column] = list(categories)
        if rule == "ordinal":
            out[column] = pd.Categorical(values, categories=categories).codes.astype(np.float32)
        else:
            for category in categories:
                out[f"{column}={category}"] = (values == category).astype(np.float32)
    return out, levels


def _groups(column: pd.Series, where: str) -> np.ndarray:
    _no_blanks(column, where)
    return column.astype(str).to_numpy()


def within_budget(cfg: PrepareConfig, path: Path, values: float, what: str) -> None:
    """Refuse, before loading, data whose features would take more than prepare.max_gib."""
    need = values * 4 / GIB  # float32
    if need > cfg.max_gib:
        raise DataError(
            f"{path}: {what} would take {need:.1f} GiB of memory as float32 features, above "
            f"prepare.max_gib = {cfg.max_gib:g}; nothing was loaded (raise the setting if the machine has the memory)"
        )


def _table_budget(cfg: PrepareConfig, path: Path) -> None:
    if not path.is_file():
        return  # read_table names it
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
        except Exception:  # noqa: BLE001 - unreadable: read_table says why
            return
        within_budget(cfg, path, meta.num_rows * meta.num_columns, f"{meta.num_rows:,} rows x {meta.num_columns} columns")
    else:  # CSV: each value takes at least two characters (a digit and a separator)
        within_budget(cfg, path, path.stat().st_size / 2, f"a {path.stat().st_size / GIB:.1f} GiB text file")


def load_table(cfg: PrepareConfig, root: Path) -> Loaded:
    """The `table` source: the declared feature columns (default: all but the label, split and group columns),
    categorical ones encoded, as float32; raises `DataError` naming what is at fault (a column, the rows)."""
    path = cfg.located(root)
    _table_budget(cfg, path)
    frame = read_table(path)
    t = cfg.table
    declared = [t.label, *(c for c in (t.split_column, t.group_column) if c), *(t.features or []), *t.categorical, *t.aside]
    missing = [c for c in dict.fromkeys(declared) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not found; the file has {list(frame.columns)}")
    special = {c for c in (t.label, t.split_column, t.group_column, *t.aside) if c is not None}
    features = t.features if t.features is not None else [c for c in frame.columns if c not in special]
    extra = [c for c in features if c in special]
    if extra:
        raise DataError(f"{path}: column(s) {extra} cannot be both a feature and the label, split, group or an aside column")
    if not features:
        raise DataError(f"{path}: no feature columns besides {sorted(special)}")
    encoded, categories = _encode(frame[features], {c: r for c, r in t.categorical.items() if c in features}, path)
    numeric = encoded.apply(pd.to_numeric, errors="coerce")
    not_numbers = numeric.isna() & encoded.notna()
    if not_numbers.any().any():
        column = not_numbers.any().idxmax()
        rows = np.flatnonzero(not_numbers[column].to_numpy())
        values = encoded[column].iloc[rows[:SHOWN]].tolist()
        raise DataError(
            f"{path}: column {column!r} has {rows.size} value(s) that are not numbers, e.g. {values} in rows "
            f"{rows[:SHOWN].tolist()}; declare it in prepare.table.categorical if it is a category"
        )
    names = [str(c) for c in numeric.columns]
    clashes = sorted({c for c in names if names.count(c) > 1} | (set(names) & special))
    if clashes:
        raise DataError(
            f"{path}: feature name(s) {clashes} occur twice, or as the label, split or group column, after encoding "
            "the categorical columns; rename a column"
        )
    x = numeric.to_numpy(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        column = numeric.columns[bad.any(0).argmax()]
        rows = np.flatnonzero(bad[:, numeric.columns.get_loc(column)])
        raise DataError(
            f"{path}: column {column!r} has {rows.size} empty, NaN or infinite value(s), rows {rows[:SHOWN].tolist()}"
        )
    y, classes = _labels(frame[t.label], f"{path}: label column {t.label!r}")
    return Loaded(
        x=x,
        y=y,
        classes=classes,
        features=names,
        label=t.label,
        categories=categories,
        split=_split_values(frame[t.split_column], f"{path}: split column {t.split_column!r}") if t.split_column else None,
        groups=_groups(frame[t.group_column], f"{path}: group column {t.group_column!r}") if t.group_column else None,
        # kept for evaluate.slices, as text: the categorical features as written, the group, the aside columns
        attributes={
            str(c): frame[c].astype(str).to_numpy()
            for c in dict.fromkeys(
                [*(c for c in t.categorical if c in features), *([t.group_column] if t.group_column else []), *t.aside]
            )
        },
    )


def load_npz(cfg: PrepareConfig, root: Path) -> Loaded:
    """The `npz` source: arrays ``x`` and ``y`` (``split`` and ``groups`` optional), or ``x_<split>`` and ``y_<split>``
    for train, test and optionally val; images channels-first. Raises `DataError` naming what is wrong."""
    path = cfg.located(root)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    shapes = npz_shapes(path)
    # Bytes as loaded (text labels take their width) or as float32 features, whichever is more.
    values = sum(float(np.prod(shape)) * max(dtype.itemsize, 4) / 4 for shape, dtype in shapes.values())
    within_budget(cfg, path, values, "its arrays (" + ", ".join(f"{k} {list(s)}" for k, (s, _) in shapes.items()) + ")")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz archive without pickled objects: {error}") from None

    def pair(xs: str, ys: str) -> tuple[np.ndarray, np.ndarray]:
        if (xs in arrays) != (ys in arrays):
            raise DataError(f"{path}: array {xs if xs in arrays else ys} has no partner {ys if xs in arrays else xs}")
        x_, y_ = arrays[xs], arrays[ys]
        if x_.ndim < 2 or y_.ndim != 1 or len(x_) != len(y_):
            raise DataError(
                f"{path}: {xs} has shape {list(x_.shape)} and {ys} {list(y_.shape)}: one row of {xs} per label in a 1-D {ys}"
            )
        return x_, y_

    if {"x", "y"} <= arrays.keys():
        x, labels = pair("x", "y")
        origin = None  # x[i] is row i
        extra = {k: arrays[k] for k in ("split", "groups") if k in arrays}
        for key, values in extra.items():
            if values.shape != labels.shape:
                raise DataError(f"{path}: array {key} has shape {list(values.shape)}; y has {list(labels.shape)}")
        split = _split_values(pd.Series(extra["split"]), f"{path}: array 'split'") if "split" in extra else None
        groups = _groups(pd.Series(extra["groups"]), f"{path}: array 'groups'") if "groups" in extra else None
    elif all(f"{a}_{s}" in arrays for a in ("x", "y") for s in ("train", "test")):
        names = [s for s in SPLIT_NAMES if f"x_{s}" in arrays or f"y_{s}" in arrays]
        parts = [pair(f"x_{s}", f"y_{s}") for s in names]
        widths = {p[0].shape[1:] for p in parts}
        if len(widths) > 1:
            raise DataError(f"{path}: the x_ arrays differ in shape per row: {sorted(map(list, widths))}")
        x = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        split = np.concatenate([np.full(len(p[1]), s) for s, p in zip(names, parts, strict=True)])
        origin = np.concatenate([[f"x_{s}[{i}]" for i in range(len(p[1]))] for s, p in zip(names, parts, strict=True)])
        groups = None
    else:
        raise DataError(f"{path}: expected arrays x and y (or x_train, y_train, x_test, y_test); found {sorted(arrays)}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: x must be numeric, got dtype {x.dtype}")
    y, classes = _labels(labels, f"{path}: array 'y'")
    images = x.ndim >= 3
    return Loaded(
        _channels_first(x).astype(np.float32), y, classes, split=split, groups=groups, origin=origin, shared_scale=images
    )


def npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and type of every array of an NPZ archive, read from the .npy headers without
    loading any data; a file that is not a zip of .npy arrays, or holds anything else, is
    refused by name."""
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path}: not an .npz archive (a zip of .npy arrays, as np.savez writes it); a single .npy "
            "array renamed? save it with np.savez(path, x=..., y=...)"
        )
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if not name.endswith(".npy"):
                    raise DataError(f"{path}: member {name!r} is not a .npy array")
                with archive.open(info) as member:
                    try:
                        version = np.lib.format.read_magic(member)
                        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                        shape, _, dtype = read(member)
                    except (ValueError, OSError) as error:
                        raise DataError(
                            f"{path}: array {name.removesuffix('.npy')!r} is not a valid .npy array ({error})"
                        ) from None
                if dtype.hasobject:
                    raise DataError(
                        f"{path}: array {name.removesuffix('.npy')!r} holds Python objects; kdflow reads numbers only (no pickles)"
                    )
                shapes[name.removesuffix(".npy")] = (shape, dtype)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataError(f"{path}: a damaged .npz archive ({error})") from None
    return shapes


CHANNELS = (1, 3, 4)  # greyscale, RGB, RGBA


def _channels_first(x: np.ndarray) -> np.ndarray:
    """Images as kdflow holds them, ``[n, channels, height, width]``: ``[n, height, width]`` is
    greyscale; ``[n, height, width, channels]`` (NumPy's and Pillow's order) is recognised by
    its last axis holding 1, 3 or 4 channels where the second does not."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in CHANNELS and x.shape[1] not in CHANNELS:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _decode(file: Path, mode: str, size: tuple[int, int] | None, background: int, max_pixels: int) -> np.ndarray:
    """One image as float32 in [0, 1], ``[height, width]`` or ``[height, width, 3]``.

    16-bit greyscale is scaled by 65535 (Pillow's plain conversion to 8 bits would clip every
    value above 255 to white); a transparent image is laid over the `background` grey level
    first (a plain conversion would drop the alpha channel and keep whatever colour the
    transparent pixels happen to hold)."""
    from PIL import Image

    with Image.open(file) as opened:
        image: Image.Image = opened
        width, height = image.size  # from the header: nothing decoded yet
        if width * height > max_pixels:
            raise DataError(
                f"{file}: {width} x {height} pixels, above prepare.images.max_pixels = {max_pixels:,} "
                "(a decompression bomb, or an image to shrink before use)"
            )
        if image.mode.startswith("I"):  # I;16, I;16B... (16-bit PNG), I
            deep = image.convert("I").convert("F")
            if size is not None:
                deep = deep.resize(size[::-1], Image.Resampling.BILINEAR)
            array = np.clip(np.asarray(deep, dtype=np.float32) / 65535.0, 0.0, 1.0)
            return np.repeat(array[..., None], 3, axis=-1) if mode == "RGB" else array
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (background,) * 3 + (255,)), rgba)
        image = image.convert(mode)
        if size is not None:
            image = image.resize(size[::-1], Image.Resampling.BILINEAR)  # size is (height, width)
        return np.asarray(image, dtype=np.float32) / 255.0


def load_images(cfg: PrepareConfig, root: Path) -> Loaded:
    """The `images` source: one sub-folder per class, PNG and JPEG files as float32 in [0, 1],
    ``[n, channels, height, width]``; raises `DataError` naming the file at fault (undecodable, another size)."""
    from PIL import Image, UnidentifiedImageError

    folder = cfg.located(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected one sub-folder of images per class)")
    classes = sorted(
        (p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))),
        key=lambda name: (0, int(name), name) if name.isdigit() else (1, 0, name),
    )
    if not classes:
        raise DataError(f"{folder}: no class folders inside")
    size = (cfg.images.size[0], cfg.images.size[1]) if cfg.images.size else None
    listed = {name: sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for name in classes}
    for name, files in listed.items():
        if not files:
            raise DataError(f"{folder / name}: no PNG or JPEG files")
    count = sum(map(len, listed.values()))
    channels = 3 if cfg.images.mode == "RGB" else 1
    if size is not None:
        within_budget(cfg, folder, count * size[0] * size[1] * channels, f"{count:,} images of {size[0]} x {size[1]}")
    else:  # every image must have the first one's size: its header tells the total
        first_file = next(iter(listed.values()))[0]
        try:
            with Image.open(first_file) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
            raise DataError(f"{first_file}: cannot be decoded as an image ({error})") from None
        within_budget(cfg, folder, count * width * height * channels, f"{count:,} images of {height} x {width}")

    pixels, labels, origin, first = [], [], [], None
    for label, name in enumerate(classes):
        for file in listed[name]:
            try:
                array = _decode(file, cfg.images.mode, size, cfg.images.background, cfg.images.max_pixels)
            except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
                raise DataError(f"{file}: cannot be decoded as an image ({error})") from None
            if first is None:
                first = (file, array.shape)
            elif array.shape != first[1]:
                raise DataError(
                    f"{file}: {array.shape[:2]} pixels, but {first[0]} has {first[1][:2]}; set prepare.images.size "
                    "to resize every image to one size"
                )
            pixels.append(array if array.ndim == 3 else array[..., None])
            labels.append(label)
            origin.append(f"{name}/{file.name}")
    x = np.stack(pixels).transpose(0, 3, 1, 2)  # [n, channels, height, width]
    return Loaded(
        np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64), classes, origin=np.asarray(origin), shared_scale=True
    )


def load_digits_source(cfg: PrepareConfig, root: Path) -> Loaded:
    """scikit-learn's 8 x 8 digits (shipped with it: no download), pixels scaled to [0, 1], classes 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()  # shipped inside scikit-learn: nothing is downloaded
    return Loaded(
        (digits.data / 16.0).astype(np.float32),
        digits.target.astype(np.int64),
        [str(i) for i in range(10)],
        features=list(digits.feature_names),
        shared_scale=True,
    )


def load_mnist1d_source(cfg: PrepareConfig, root: Path) -> Loaded:
    """MNIST-1D, `cfg.num_samples` signals generated offline from `cfg.seed`, classes 0..9."""
    data = make_mnist1d(cfg.num_samples, cfg.seed)
    return Loaded(data.x, data.y, [str(i) for i in range(10)])


LOADERS = {
    "mnist1d": load_mnist1d_source,
    "digits": load_digits_source,
    "table": load_table,
    "npz": load_npz,
    "images": load_images,
}


def load(cfg: PrepareConfig, root: Path) -> Loaded:
    """The configured source's rows; raises `DataError` when there are none or a feature is NaN or infinite."""
    loaded = LOADERS[cfg.dataset](cfg, root)
    if len(loaded.y) == 0:
        raise DataError(f"{cfg.path or cfg.dataset}: no rows")
    if not np.isfinite(loaded.x).all():
        bad = np.flatnonzero(~np.isfinite(loaded.x.reshape(len(loaded.x), -1)).all(1))
        raise DataError(
            f"{cfg.path or cfg.dataset}: {bad.size} row(s) with NaN or infinite features, rows {bad[:SHOWN].tolist()}"
        )
    return loaded


def make_splits(loaded: Loaded, test_fraction: float, val_fraction: float, seed: int) -> dict[str, Split]:
    """Train, validation and test: the user's own split when the source gives one (validation
    carved from train when it gives none), else stratified by label, seeded, grouped when groups
    are declared, with identical rows kept in one split."""
    everything = np.arange(len(loaded.y))
    # Splits made here keep identical rows together (and join declared groups they link).
    same = content_ids(loaded.x) if loaded.split is None or not (loaded.split == "val").any() else None
    groups = merge_groups(loaded.groups, same) if loaded.groups is not None and same is not None else loaded.groups
    if loaded.split is not None:  # the user's split; validation carved from train if not given
        given = {name: everything[loaded.split == name] for name in ("train", "val", "test")}
        for name in ("train", "test"):
            if given[name].size == 0:
                raise DataError(f"the given split has no {name} rows")
        trainval = given["train"]
        test = given["test"]
    else:
        keep, held = holdout_indices(loaded.y, test_fraction, seed, groups, same)
        trainval, test = everything[keep], everything[held]
    if loaded.split is not None and given["val"].size:
        train, val = trainval, given["val"]
    else:
        keep, held = holdout_indices(
            loaded.y[trainval],
            val_fraction,
            seed + 1,
            None if groups is None else groups[trainval],
            None if same is None else same[trainval],
        )
        train, val = trainval[keep], trainval[held]
    return {name: loaded.rows(rows) for name, rows in (("train", train), ("val", val), ("test", test))}
