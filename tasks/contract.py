"""Stage `contract`: learn the data contract from the training split, once.

When `data/contract.yaml` exists this stage leaves it alone: it is a reviewed file, versioned
in git, and every run is checked against it (stage `validate`). Delete it to learn a new one.
"""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.data import contract
from kdflow.data.splits import Schema, load_split
from kdflow.registry.lineage import file_md5
from tasks import layout
from tasks._stage import console, main


def run(params: Params, root: Path) -> dict:
    path = root / layout.CONTRACT
    train = load_split(root / layout.SPLIT_FILES["train"])
    schema = Schema.load(root / layout.SCHEMA)
    if path.exists():
        kept = contract.read(path)  # still a valid contract, and of this data?
        contract.check_matches(kept, schema, path)
        console.print(f"contract: keeping {layout.CONTRACT} (reviewed; delete it to learn a new one)")
        return {"written": False}
    cfg = params.validate_
    train_path = root / layout.SPLIT_FILES["train"]
    learnt = contract.learn(
        train,
        schema,
        file_md5(train_path),
        tolerance=cfg.value_tolerance,
        proportion_tolerance=cfg.class_proportion_tolerance,
        min_rows=cfg.min_rows,
        max_rows=cfg.max_rows,
    )
    contract.write(learnt, path)
    console.print(f"contract: wrote {layout.CONTRACT} from the training split; review it and commit it")
    return {"written": True}


if __name__ == "__main__":
    main("contract", run)
