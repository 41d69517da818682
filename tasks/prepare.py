"""Stage `prepare`: generate the bundled dataset and split it into train, validation and test.

Validation is carved from the training part (stratified), so the test split stays untouched
until `evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.data import make_mnist1d, save_split, stratified_split
from tasks import layout
from tasks._stage import console, main


def run(params: Params, root: Path) -> dict[str, int]:
    cfg = params.prepare
    data = make_mnist1d(cfg.num_samples, cfg.seed)
    trainval, test = stratified_split(data, cfg.test_fraction, cfg.seed)
    train, val = stratified_split(trainval, cfg.val_fraction, cfg.seed + 1)
    splits = {"train": train, "val": val, "test": test}
    for name, split in splits.items():
        save_split(split, root / layout.SPLIT_FILES[name])
    rows = {name: len(split) for name, split in splits.items()}
    console.print(f"prepare: {cfg.dataset} {rows}")
    return rows


if __name__ == "__main__":
    main("prepare", run)
