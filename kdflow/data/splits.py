"""Datasets as plain arrays: generation of the bundled MNIST-1D, splitting, and NPZ I/O.

A split is a pair of arrays: ``x`` (float32; ``[n, features]`` for signals and tables,
``[n, channels, height, width]`` for images) and ``y`` (int64 labels, ``[n]``). The `Schema`
names what the arrays hold: each feature (flattened in C order), the label and the classes.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdflow.io import atomic_path, read_json, write_json

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None = None  # per row: its group (patient, user...), when declared
    # per row: where it came from in the user's source (a table's row number, an image file),
    # so that messages name rows the user can find
    origin: np.ndarray | None = None
    # per column kept for slicing (kdflow.evaluation.slices): a table's categorical, group and
    # prepare.table.aside columns, each a text value per row
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim < 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"bad split shapes: x {self.x.shape}, y {self.y.shape}")
        for name, values in (("groups", self.groups), ("origin", self.origin), *self.attributes.items()):
            if values is not None and len(values) != len(self.y):
                raise ValueError(f"bad split shapes: {name} {values.shape}, y {self.y.shape}")

    def rows(self, index: np.ndarray) -> Split:
        """These rows, with everything known about them."""
        pick = lambda values: None if values is None else values[index]
        return Split(
            self.x[index], self.y[index], pick(self.groups), pick(self.origin), {k: v[index] for k, v in self.attributes.items()}
        )

    def where(self, rows: np.ndarray | list[int]) -> list:
        """These rows as the user's source names them (their positions when it does not)."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.origin[rows].tolist() if self.origin is not None else rows.tolist()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> list[int]:
        """One sample's shape, without the row axis: ``[length]`` or ``[channels, height, width]``."""
        return list(self.x.shape[1:])


@dataclass(frozen=True)
class Schema:
    """What the prepared arrays mean, in the user's own words: messages and the data contract
    name features and the label by these names."""

    features: list[str]  # one name per value of a flattened sample
    label: str
    classes: list[str]  # label i is classes[i]
    # a table's categorical columns: their categories, in the order of their codes or columns
    categories: dict[str, list[str]] = field(default_factory=dict)
    # whether every feature is on one scale (pixels): the contract then holds one value range
    # for all of them, since a pixel that is dark in every training image may be lit in a
    # test image, and only the scale says what an impossible value is
    shared_scale: bool = False

    def save(self, path: str | Path) -> None:
        """Write the schema to `path` as JSON, atomically."""
        write_json(asdict(self), path)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """The schema `save` wrote to `path`."""
        return cls(**read_json(path))


def feature_names(sample_shape: Sequence[int]) -> list[str]:
    """Names for unnamed features: x0, x1... for signals; pixel_<row>_<col> (or red_, green_,
    blue_... per channel) for images, as scikit-learn names its digits' pixels."""
    if len(sample_shape) != 3:
        return [f"x{i}" for i in range(math.prod(sample_shape))]
    channels, height, width = sample_shape
    prefixes = {1: ["pixel"], 3: ["red", "green", "blue"]}.get(channels, [f"channel{c}" for c in range(channels)])
    return [f"{p}_{r}_{c}" for p in prefixes for r in range(height) for c in range(width)]


def make_mnist1d(num_samples: int, seed: int) -> Split:
    """Generate MNIST-1D offline with its reference generator (never its downloader).

    `mnist1d.make_dataset` reseeds the global `random` and NumPy generators; their states are
    restored so that generating data does not change what the caller draws next.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = 1.0  # kdflow does its own stratified split below
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return Split(raw["x"].astype(np.float32), raw["y"].astype(np.int64))


def stratified_split(data: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off `fraction` of each class (at least one row per class) as the second part."""
    keep, out = holdout_indices(data.y, fraction, seed)
    return Split(data.x[keep], data.y[keep]), Split(data.x[out], data.y[out])


def holdout_indices(
    y: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None, same: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (kept, held out), about `fraction` held out, stratified by label. With
    `groups`, every group lands whole on one side (scikit-learn's StratifiedGroupKFold; one
    fold is held out), so no patient or user is in two splits. With `same` (an id per row,
    see `content_ids`), rows that share an id land on one side too."""
    if groups is not None:
        return _grouped_holdout(y, fraction, seed, groups)
    if same is not None:
        return _unit_holdout(y, fraction, seed, same)
    rng = np.random.default_rng(seed)
    held = [
        rng.choice(rows, size=max(1, round(len(rows) * fraction)), replace=False)
        for rows in (np.flatnonzero(y == label) for label in np.unique(y))
    ]
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(held)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def row_digests(x: np.ndarray) -> list[bytes]:
    """A content hash per row; -0.0 and 0.0 hash alike, so do values that differ only in dtype.
    Row by row, so that memory stays small however wide the rows (images)."""
    return [
        hashlib.blake2b((np.asarray(row, dtype=np.float64) + 0.0).tobytes(), digest_size=16).digest()
        for row in x.reshape(len(x), int(np.prod(x.shape[1:])))
    ]


def content_ids(x: np.ndarray, digests: list[bytes] | None = None) -> np.ndarray | None:
    """An id per row, the same for rows with identical features; None when every row is unique.
    Survey answers and small integer scales make many identical rows that are different
    people: a random split would put copies in train and test, a leak kdflow itself made.
    `digests`: the rows' `row_digests`, when the caller has them already."""
    keys = np.frombuffer(b"".join(digests if digests is not None else row_digests(x)), dtype="V16")
    _, ids = np.unique(keys, return_inverse=True)
    return ids if ids.max(initial=-1) + 1 < len(x) else None


def merge_groups(groups: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Declared groups joined wherever identical rows link two of them (connected components),
    so that keeping groups together keeps identical rows together too."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, group = np.unique(groups, return_inverse=True)
    g = group.max() + 1
    nodes = g + same.max() + 1  # a node per group, then one per distinct row
    graph = coo_matrix((np.ones(len(group)), (group, g + same)), shape=(nodes, nodes))
    _, component = connected_components(graph, directed=False)
    return component[group]


def _unit_holdout(y: np.ndarray, fraction: float, seed: int, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stratified holdout of whole units (rows sharing an id): per class (a unit's class is
    that of its first row), units in a seeded random order, each taken when it brings the held
    out rows closer to `fraction` of the class's rows; at least one unit when the class has
    two or more, never all, and none of a class that is a single unit (it stays in train)."""
    rng = np.random.default_rng(seed)
    _, first, inverse, sizes = np.unique(units, return_index=True, return_inverse=True, return_counts=True)
    unit_label = y[first]
    held = []
    for label in np.unique(unit_label):
        members = rng.permutation(np.flatnonzero(unit_label == label))
        if members.size < 2:
            continue
        target, total, taken = fraction * sizes[members].sum(), 0, list[int]()
        for unit in members:
            if len(taken) < members.size - 1 and abs(total + sizes[unit] - target) < abs(total - target):
                taken.append(unit)
                total += sizes[unit]
        held.append(taken or [members[np.argmin(sizes[members])]])
    mask = np.isin(inverse, np.concatenate(held)) if held else np.zeros(len(y), dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _grouped_holdout(y: np.ndarray, fraction: float, seed: int, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    count = len(np.unique(groups))
    if count < 2:
        raise ValueError(f"{count} group(s) cannot be split: a grouped holdout needs at least 2 groups")
    # Folds, as many as make `fraction` a whole number of them, the more the finer (0.2 is 4 of
    # 20, 0.15 is 3 of 20; at most 20, at most one per group). Groups of unequal size make
    # folds of unequal size, so the folds held out are chosen by rows: each one that brings the
    # count closer to `fraction` of the rows (at least one, never all).
    options = [(k, min(max(1, round(fraction * k)), k - 1)) for k in range(2, min(20, count) + 1)]
    folds, _ = min(options, key=lambda o: (abs(o[1] / o[0] - fraction), -o[0]))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    tests = [test for _, test in splitter.split(np.zeros(len(y)), y, groups)]
    target, total, taken = fraction * len(y), 0, list[int]()
    for i, test in enumerate(tests):
        if len(taken) < folds - 1 and abs(total + len(test) - target) < abs(total - target):
            taken.append(i)
            total += len(test)
    if not taken:
        taken = [int(np.argmin([abs(len(t) - target) for t in tests]))]
    held = np.sort(np.concatenate([tests[i] for i in taken]))
    return np.setdiff1d(np.arange(len(y)), held), held


def save_split(split: Split, path: str | Path) -> None:
    """Write the split to `path` as an .npz archive (groups as text, origin when known), atomically."""
    extra: dict[str, Any] = {} if split.groups is None else {"groups": split.groups.astype(str)}
    if split.origin is not None:  # row numbers, or names such as image files
        extra["origin"] = split.origin
    if split.attributes:  # names and values apart: a column's name need not be a valid key
        extra["attribute_names"] = np.asarray(list(split.attributes), dtype=str)
        extra["attribute_values"] = np.stack([np.asarray(v).astype(str) for v in split.attributes.values()], axis=1)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, x=split.x, y=split.y, **extra)


def load_split(path: str | Path) -> Split:
    """The split `save_split` wrote to `path` (no pickles are read)."""
    with np.load(path, allow_pickle=False) as archive:
        optional = {name: archive[name] for name in ("groups", "origin") if name in archive.files}
        if "attribute_names" in archive.files:
            values = archive["attribute_values"]
            optional["attributes"] = {str(n): values[:, i] for i, n in enumerate(archive["attribute_names"])}
        return Split(archive["x"], archive["y"], **optional)
