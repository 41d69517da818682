"""Stage `prepare`: read the configured source and write train, validation and test splits.

The source is the bundled MNIST-1D or scikit-learn digits, or the user's own table, NPZ arrays
or image folders under data/raw/ (see kdflow/data/sources.py). The splits are the user's own (a split
column, or split arrays) or made here: stratified by label, seeded, grouped when a group
column is declared, and with identical rows kept in one split. Validation is carved from the training part, so the test split stays
untouched until `evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.data.sources import DataError, load, make_splits
from kdflow.data.splits import save_split
from kdflow.text import safe
from tasks import layout
from tasks._stage import console, main


def run(params: Params, root: Path) -> dict[str, int]:
    cfg = params.prepare
    loaded = load(cfg, root)
    try:
        splits = make_splits(loaded, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    except ValueError as error:
        raise DataError(f"{cfg.path or cfg.dataset}: cannot split: {error}") from None
    if loaded.groups is not None and loaded.split is None:
        share = len(splits["test"]) / len(loaded.y)
        if abs(share - cfg.test_fraction) > 0.05:  # whole groups cannot always make the fraction
            console.print(
                f"[yellow]prepare warning:[/] the grouped test split holds {share:.0%} of the rows "
                f"(test_fraction {cfg.test_fraction:.0%}): too few groups, or groups of very unequal size"
            )
    for name, split in splits.items():
        save_split(split, root / layout.SPLIT_FILES[name])
    loaded.schema.save(root / layout.SCHEMA)
    rows = {name: len(split) for name, split in splits.items()}
    console.print(f"prepare: {cfg.dataset}{f' {safe(cfg.path)}' if cfg.path else ''} {rows}, {len(loaded.classes)} classes")
    return rows


if __name__ == "__main__":
    main("prepare", run)
