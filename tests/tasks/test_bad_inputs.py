"""The bad-input corpus, stage by stage: each bad input goes through the stages as `dvc repro`
starts them (prepare, contract, validate), and must stop one of them with exit status 1 and a
message naming the file, column, rows or expectation, before anything is trained or
registered. (tests/kdflow/data/test_sources.py checks the readers' messages in more detail;
tests/flows/test_lifecycle_e2e.py runs one bad input through the real flow and registry.)"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from kdflow.io import read_json
from tasks import contract, layout, prepare, teacher, validate
from tasks._stage import main
from tests.conftest import TINY, write_params

TABLE = {"dataset": "table", "path": "data/raw/t.csv", "table": {"label": "churned", "categorical": {"plan": "onehot"}}}


def customers(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 60, rows).astype(float),
            "spend": rng.normal(50, 10, rows).round(3),
            "minutes": rng.normal(300, 80, rows).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
        }
    )
    noise = rng.uniform(size=rows) < 0.2  # no single column gives the label away
    frame["churned"] = np.where((frame["tenure"] < 20) ^ noise, "yes", "no")
    return frame


def use(root: Path, prepare_section: dict, **sections: dict) -> None:
    raw = copy.deepcopy(TINY)
    raw["prepare"] = prepare_section
    for name, values in sections.items():
        raw[name] = raw.get(name, {}) | values
    write_params(root, raw)


def write_csv(root: Path, frame: pd.DataFrame | str | bytes, name: str = "t.csv") -> None:
    path = root / "data/raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, pd.DataFrame):
        frame.to_csv(path, index=False)
    else:
        path.write_bytes(frame if isinstance(frame, bytes) else frame.encode())


def table(frame: pd.DataFrame | str | bytes, **table_section) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        write_csv(root, frame)
        use(root, TABLE | {"table": TABLE["table"] | table_section})

    return setup


def kept_contract_then(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    """A contract learnt from good data and kept; then the data changes."""

    def setup(root: Path) -> None:
        table(customers())(root)
        for stage, run in (("prepare", prepare.run), ("contract", contract.run)):
            main(stage, run)
        write_csv(root, change(customers()))

    return setup


def given_split(frame: pd.DataFrame) -> pd.DataFrame:
    """The user's own split, 70/10/20 within each class."""
    frame = frame.copy()
    rank = frame.groupby("churned").cumcount() % 10
    frame["part"] = np.select([rank < 7, rank < 8], ["train", "val"], "test")
    return frame


def with_part(
    change: Callable[[pd.DataFrame], None], rows: int = 300, validate: dict | None = None, **table_section
) -> Callable[[Path], None]:
    frame = given_split(customers(rows))
    change(frame)
    setup = table(frame, split_column="part", **table_section)
    if validate is None:
        return setup

    def with_settings(root: Path) -> None:
        setup(root)
        raw = yaml.safe_load((root / "params.yaml").read_text())
        raw["validate"] = raw.get("validate", {}) | validate
        write_params(root, raw)

    return with_settings


def images(
    sizes: dict[str, list[tuple[int, int]]], damage: Callable[[Path], None] = lambda root: None, **image_section
) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for name, shapes in sizes.items():
            folder = root / "data/raw/img" / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, (h, w) in enumerate(shapes):
                Image.fromarray((np.arange(h * w).reshape(h, w) * (i + 1) % 256).astype(np.uint8)).save(folder / f"{i}.png")
        damage(root)
        use(root, {"dataset": "images", "path": "data/raw/img", "images": image_section})

    return setup


def _set(root: Path, section: str, **values) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw[section] = raw.get(section, {}) | values
    write_params(root, raw)


def npz(**arrays) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / "data/raw").mkdir(parents=True, exist_ok=True)
        np.savez(root / "data/raw/a.npz", **arrays)
        use(root, {"dataset": "npz", "path": "data/raw/a.npz"})

    return setup


def a_single_npy_array(path: Path) -> None:
    with path.open("wb") as file:  # np.save would add .npy to the name
        np.save(file, np.ones((120, 4)))


def npz_file(write: Callable[[Path], None], **prepare_section) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / "data/raw").mkdir(parents=True, exist_ok=True)
        write(root / "data/raw/a.npz")
        use(root, {"dataset": "npz", "path": "data/raw/a.npz", **prepare_section})

    return setup


def npz_bomb(path: Path) -> None:
    """A few bytes that declare 4e10 float32 values: what a small compressed archive of zeros
    expands to, without making this machine hold them to write the test."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 40)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 1024)
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(10**9 // 10**6, dtype=np.int64))


def npz_with_a_text_member(path: Path) -> None:
    import zipfile

    np.savez(path, x=np.ones((120, 4)), y=LABELS)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "not an array")


def npz_with_a_corrupt_member(path: Path) -> None:
    np.savez_compressed(path, x=np.ones((120, 4)), y=LABELS)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # a flipped byte inside x's compressed data
    path.write_bytes(bytes(data))


def cell(row: int, column: str, value) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return change


def copy_row(into: str, relabel: bool = False) -> Callable[[pd.DataFrame], None]:
    """The first train row's features copied into the second train row (with the other label)
    or into the first row of another split (with its label)."""

    def change(frame: pd.DataFrame) -> None:
        train = frame.index[frame["part"] == "train"]
        source, target = train[0], (train[1] if into == "train" else frame.index[frame["part"] == into][0])
        columns = ["tenure", "spend", "minutes", "plan", "churned"]
        frame.loc[target, columns] = frame.loc[source, columns].to_numpy()
        if relabel:
            frame.loc[target, "churned"] = "no" if frame.loc[source, "churned"] == "yes" else "yes"

    return change


def shift_test(frame: pd.DataFrame) -> None:
    frame.loc[frame["part"] == "test", "minutes"] += 200


def patient_in_two_splits(frame: pd.DataFrame) -> None:
    frame["patient"] = frame["part"] + "-" + (frame.groupby("part").cumcount() // 3).astype(str)
    frame.loc[frame.index[frame["part"] == "test"][-1], "patient"] = "train-0"


def leaky_column(frame: pd.DataFrame) -> None:
    frame["cancel_code"] = np.where(frame["churned"] == "yes", 7.0, 0.0)


def mostly_one_class_in_test(frame: pd.DataFrame) -> None:
    test = frame.index[frame["part"] == "test"]
    frame.loc[test[: int(len(test) * 0.9)], "churned"] = "yes"


def truncate(root: Path) -> None:
    path = root / "data/raw/img/dogs/0.png"
    path.write_bytes(path.read_bytes()[:40])


def not_an_image(root: Path) -> None:
    (root / "data/raw/img/dogs/0.png").write_bytes(b"GIF89a, or so it says")


def empty_class(root: Path) -> None:
    (root / "data/raw/img/birds").mkdir()


@dataclass(frozen=True)
class Bad:
    setup: Callable[[Path], None]
    stage: str  # the stage that must stop
    message: str  # a regular expression its message must match


LABELS = np.array([0, 1] * 60)
# Rows are named as the CSV file numbers them: the copied rows below are these.
_PARTS = given_split(customers())["part"]
FIRST_TRAIN, SECOND_TRAIN = _PARTS.index[_PARTS == "train"][:2]
FIRST_TEST = _PARTS.index[_PARTS == "test"][0]
CORPUS = {
    "empty file": Bad(table(b""), "prepare", r"data/raw/t\.csv: the file is empty"),
    "header only": Bad(
        table("tenure,spend,churned\n"), "prepare", r"t\.csv: no rows \(columns: \['tenure', 'spend', 'churned'\]\)"
    ),
    "missing label column": Bad(
        table(customers().drop(columns="churned")),
        "prepare",
        r"column\(s\) \['churned'\] not found; the file has \['tenure', 'spend', 'minutes', 'plan'\]",
    ),
    "renamed label column": Bad(
        table(customers().rename(columns={"churned": "Churned"})),
        "prepare",
        r"column\(s\) \['churned'\] not found; the file has \[.*'Churned'\]",
    ),
    "undeclared categorical column": Bad(
        table(customers(), categorical={}),
        "prepare",
        r"column 'plan' has 300 value\(s\) that are not numbers, e\.g\. \['basic', .*declare it in prepare\.table\.categorical",
    ),
    "string in a numeric column": Bad(
        with_part(cell(7, "spend", "12,5")),
        "prepare",
        r"column 'spend' has 1 value\(s\) that are not numbers, e\.g\. \['12,5'\] in rows \[7\]",
    ),
    "NaN": Bad(
        with_part(cell(11, "minutes", np.nan)),
        "prepare",
        r"column 'minutes' has 1 empty, NaN or infinite value\(s\), rows \[11\]",
    ),
    "infinity": Bad(
        with_part(cell(12, "tenure", "inf")), "prepare", r"column 'tenure' has 1 empty, NaN or infinite value\(s\), rows \[12\]"
    ),
    "row without a label": Bad(
        with_part(cell(5, "churned", np.nan)), "prepare", r"label column 'churned': 1 row\(s\) without a label, rows \[5\]"
    ),
    "not UTF-8": Bad(table("tenure,plan,churned\n1,caf\xe9,no\n".encode("latin-1")), "prepare", r"t\.csv: not UTF-8 text"),
    "a split with zero rows": Bad(
        with_part(lambda f: f.__setitem__("part", "train")), "prepare", r"the given split has no test rows"
    ),
    "bad split values": Bad(
        with_part(cell(3, "part", "holdout")),
        "prepare",
        r"split column 'part': split values must be train, val or test; got \['holdout'\] in rows \[3\]",
    ),
    "a single class": Bad(table(customers().assign(churned="no")), "contract", r"single class \(\['no'\]\): nothing to classify"),
    "an extra feature column": Bad(
        kept_contract_then(lambda f: f.assign(age=40.0)),
        "contract",
        r"contract\.yaml was learnt from other data \(features: the contract has 6 .*the data 7 .*Delete it",
    ),
    "a missing feature column": Bad(
        kept_contract_then(lambda f: f.drop(columns="minutes")),
        "contract",
        r"learnt from other data \(features: the contract has 6 \['tenure', 'spend', 'minutes'",
    ),
    "a label outside the contract": Bad(
        kept_contract_then(lambda f: f.assign(churned=f["churned"].where(f.index != 9, "maybe"))),
        "contract",
        r"classes: the contract has 2 \['no', 'yes'\], the data 3 \['maybe', 'no', 'yes'\]",
    ),
    "a value outside the contract": Bad(
        kept_contract_then(lambda f: f.assign(spend=f["spend"].where(f.index != 4, 1e6))),
        "validate",
        r"\.spend: expect_column_values_to_be_between: 1 of \d+ rows; values \[1000000\.0\]; allowed \[.*\] "
        r"\(ranges\.spend in the data contract\); rows \[\d+\]",
    ),
    "too few rows": Bad(
        table(customers(rows=60)),
        "validate",
        r"val: expect_table_row_count_to_be_between: 5 rows, below min_rows = 10 \(the data contract; validate\.min_rows when it was learnt\)",
    ),
    "leaked rows": Bad(
        with_part(copy_row("test")), "validate", rf"1 sample\(s\) of train also in test: rows {FIRST_TRAIN}<->{FIRST_TEST}\b"
    ),
    "conflicting duplicates": Bad(
        with_part(copy_row("train", relabel=True), validate={"max_conflicting_share": 0.0}),
        "validate",
        rf"1 of \d+ rows \(0\.5%\) in train repeat the features of a row with another label: rows\(label\) "
        rf"{FIRST_TRAIN}\((yes|no)\)<->{SECOND_TRAIN}\((yes|no)\): more than validate\.max_conflicting_share = 0\.0",
    ),
    "a grouped leak": Bad(
        with_part(patient_in_two_splits, group_column="patient"),
        "validate",
        r"1 group\(s\) in both train and test: \['train-0'\]",
    ),
    "a target-leaking feature": Bad(
        with_part(leaky_column, rows=5000),
        "validate",
        r"feature 'cancel_code' alone predicts the label with balanced accuracy 1\.0000 out of fold on \d+ train and "
        r"validation rows \(validate\.target_leak_accuracy = 0\.99\), p = .* under validate\.alpha = 0\.01: a target leak\?",
    ),
    "drift beyond the fail threshold": Bad(
        with_part(shift_test),
        "validate",
        r"test\.minutes: drift from train, KS statistic 0\.\d+ \(validate\.drift_min_effect = 0\.1\), p = \S+ after correcting "
        r"for \d+ tests, under validate\.alpha = 0\.01",
    ),
    "a given split far from the contract's class shares": Bad(
        with_part(mostly_one_class_in_test),
        "validate",
        r"test: class '(yes|no)' is 0\.\d+ of the rows; the contract says 0\.\d+: a difference of "
        r"0\.\d+ \(proportion_tolerance = 0\.1 in the data contract\), p = \S+ after correcting",
    ),
    "mixed image sizes without a resize": Bad(
        images({"cats": [(8, 8)] * 30, "dogs": [(9, 8)] * 30}),
        "prepare",
        r"dogs/0\.png: \(9, 8\) pixels, but .*cats/0\.png has \(8, 8\); set prepare\.images\.size",
    ),
    "a truncated image": Bad(
        images({"cats": [(8, 8)] * 30, "dogs": [(8, 8)] * 30}, truncate), "prepare", r"dogs/0\.png: cannot be decoded as an image"
    ),
    "an unreadable image": Bad(
        images({"cats": [(8, 8)] * 30, "dogs": [(8, 8)] * 30}, not_an_image),
        "prepare",
        r"dogs/0\.png: cannot be decoded as an image",
    ),
    "an empty class folder": Bad(
        images({"cats": [(8, 8)] * 30, "dogs": [(8, 8)] * 30}, empty_class), "prepare", r"img/birds: no PNG or JPEG files"
    ),
    "pickled NPZ arrays": Bad(
        npz(x=np.array([{"a": 1}] * 120, dtype=object), y=LABELS),
        "prepare",
        r"a\.npz: array 'x' holds Python objects; kdflow reads numbers only \(no pickles\)",
    ),
    "an NPZ that expands past prepare.max_gib": Bad(
        npz_file(npz_bomb),
        "prepare",
        r"a\.npz: its arrays \(x \[1000000000, 40\], y \[1000\]\) would take 149\.0 GiB of memory as "
        r"float32 features, above prepare\.max_gib = 8; nothing was loaded",
    ),
    "a .npy array renamed .npz": Bad(
        npz_file(a_single_npy_array),
        "prepare",
        r"a\.npz: not an \.npz archive \(a zip of \.npy arrays, as np\.savez writes it\); a single \.npy array renamed\?",
    ),
    "an NPZ archive with a corrupt member": Bad(
        npz_file(npz_with_a_corrupt_member),
        "prepare",
        r"a\.npz: (a damaged \.npz archive|not a readable \.npz archive|array 'x' is not a valid \.npy array)",
    ),
    "an NPZ member that is not an array": Bad(
        npz_file(npz_with_a_text_member), "prepare", r"a\.npz: member 'notes\.txt' is not a \.npy array"
    ),
    "an image with more pixels than prepare.images.max_pixels": Bad(
        images({"cats": [(8, 8)] * 30, "dogs": [(8, 8)] * 30}, max_pixels=32),
        "prepare",
        r"cats/0\.png: 8 x 8 pixels, above prepare\.images\.max_pixels = 32 \(a decompression bomb",
    ),
    "more images than prepare.max_gib holds": Bad(
        lambda root: (images({"cats": [(8, 8)] * 30, "dogs": [(8, 8)] * 30})(root), _set(root, "prepare", max_gib=1e-6)),
        "prepare",
        r"img: 60 images of 8 x 8 would take 0\.0 GiB of memory as float32 features, above prepare\.max_gib = 1e-06",
    ),
    "NPZ arrays of different lengths": Bad(
        npz(x=np.ones((119, 4)), y=LABELS), "prepare", r"x has shape \[119, 4\] and y \[120\]"
    ),
}


@pytest.mark.parametrize("case", CORPUS)
def test_bad_input_stops_before_training_with_a_message(case, project, capsys):
    bad = CORPUS[case]
    bad.setup(project)
    capsys.readouterr()
    stopped = None
    for stage, run in (("prepare", prepare.run), ("contract", contract.run), ("validate", validate.run)):
        try:
            main(stage, run)
        except SystemExit as exit:
            stopped = (stage, exit.code)
            break
    message = " ".join(capsys.readouterr().err.split())
    assert stopped == (bad.stage, 1), message
    assert f"{bad.stage} failed:" in message and "Traceback" not in message
    assert re.search(bad.message, message), message
    # Nothing after the failed stage ran: no passing report for training to start from, no
    # model, and the registry was never opened.
    # The flow's summary will say why: the stage kept its message.
    kept = read_json(project / layout.FAILED_STAGE)
    assert kept["stage"] == bad.stage and re.search(bad.message, " ".join(kept["message"].split()))
    report = project / layout.VALIDATION_REPORT
    assert not report.exists() or not read_json(report)["passed"]
    # Training refuses to start after it, even when started by hand.
    with pytest.raises(SystemExit) as refused:
        main("teacher", teacher.run)
    why = " ".join(capsys.readouterr().err.split())
    assert refused.value.code == 1 and "teacher failed:" in why
    assert ("stage validate must pass before training" if not report.exists() else "nothing is trained until it passes") in why
    assert not (project / "models").exists() and not (project / "mlflow.db").exists()


def test_the_corpus_is_large_and_every_stage_is_in_it():
    assert len(CORPUS) >= 20 and {bad.stage for bad in CORPUS.values()} == {"prepare", "contract", "validate"}
