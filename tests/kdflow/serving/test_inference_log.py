"""The inference log's files: exact names and columns (what `kdflow monitor` reads), written whole,
on rows and on time, from many threads at once, and never at the cost of a prediction."""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kdflow.serving import model as served
from kdflow.serving.model import InferenceLog

CLASSES = ["no", "yes"]
NAME = re.compile(r"^(\d{6}\.\d{6})-(\d+)-(\d+)\.parquet$")


def rows(n: int, features: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    proba = rng.dirichlet([1.0, 1.0], size=n)
    return x, np.asarray(CLASSES, dtype=object)[proba.argmax(1)], proba


def files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def make(folder: Path, features: int = 3, **kwargs) -> InferenceLog:
    return InferenceLog(folder, [f"x{i}" for i in range(features)], CLASSES, model="run123", **kwargs)


def wait_for(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    pytest.fail("timed out")


def test_a_file_has_the_exact_name_columns_and_types(tmp_path):
    log = make(tmp_path, flush_rows=5, flush_seconds=60)
    before = datetime.now(UTC)
    x1, labels1, proba1 = rows(3)
    log.add(x1, labels1, proba1)
    assert files(tmp_path) == []  # 3 rows wait, fewer than 5
    x2, labels2, proba2 = rows(2, seed=1)
    log.add(x2, labels2, proba2)  # 5 wait: written by this call, before it returns
    (path,) = files(tmp_path)
    after = datetime.now(UTC)

    table = pq.read_table(path)
    assert table.schema.names == [
        "x0",
        "x1",
        "x2",
        "kdflow_label",
        "kdflow_proba_no",
        "kdflow_proba_yes",
        "kdflow_time",
        "kdflow_model",
    ]
    types = {f.name: f.type for f in table.schema}
    assert all(types[f"x{i}"] == pa.float32() for i in range(3))
    assert types["kdflow_label"] == pa.string() and types["kdflow_model"] == pa.string()
    assert types["kdflow_proba_no"] == types["kdflow_proba_yes"] == pa.float32()
    assert types["kdflow_time"] == pa.timestamp("us", tz="UTC")
    frame = table.to_pandas()
    np.testing.assert_array_equal(frame[["x0", "x1", "x2"]].to_numpy(), np.concatenate([x1, x2]))
    assert frame["kdflow_label"].tolist() == [*labels1, *labels2]
    np.testing.assert_allclose(frame[["kdflow_proba_no", "kdflow_proba_yes"]], np.concatenate([proba1, proba2]), rtol=1e-6)
    assert set(frame["kdflow_model"]) == {"run123"}
    times = frame["kdflow_time"]
    assert before <= times.min() <= times.max() <= after and times.is_monotonic_increasing

    # <folder>/<UTC date of the first row>/<its UTC time>-<pid>-<seq>.parquet
    first = times.iloc[0].to_pydatetime()
    assert path.parent == tmp_path / first.strftime("%Y-%m-%d")
    stamp, pid, _ = NAME.match(path.name).groups()
    assert stamp == first.strftime("%H%M%S.%f") and int(pid) == os.getpid()
    assert not list(tmp_path.rglob(".*"))  # no temporary file left behind


def test_images_give_one_column_per_pixel_in_c_order(tmp_path):
    log = make(tmp_path, features=12, flush_rows=1)
    x = np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4)  # two 1x3x4 images
    log.add(x, np.asarray(["no", "yes"], dtype=object), np.full((2, 2), 0.5))
    (path,) = files(tmp_path)
    frame = pq.read_table(path).to_pandas()
    np.testing.assert_array_equal(frame[[f"x{i}" for i in range(12)]].to_numpy(), x.reshape(2, 12))


def test_files_are_written_under_a_dot_name_then_renamed(tmp_path, monkeypatch):
    moves = []
    real = os.replace

    def replace(source, target):
        moves.append((Path(source), Path(target), Path(source).exists(), Path(target).exists()))
        real(source, target)

    monkeypatch.setattr(served.os, "replace", replace)
    log = make(tmp_path, flush_rows=2)
    for seed in range(3):
        log.add(*rows(2, seed=seed))
    assert len(moves) == 3
    for source, target, written, there in moves:
        assert source.parent == target.parent and source.name.startswith(".") and written and not there
    sequence = [int(NAME.match(target.name).group(3)) for _, target, _, _ in moves]
    assert sequence == sorted(sequence) and len(set(sequence)) == 3  # numbered in order, never twice


def test_rows_are_written_when_the_oldest_has_waited_long_enough(tmp_path):
    log = make(tmp_path, flush_rows=1000, flush_seconds=0.5)
    start = time.monotonic()
    log.add(*rows(2))
    log.add(*rows(1, seed=1))
    assert files(tmp_path) == []
    (path,) = wait_for(lambda: files(tmp_path))
    assert time.monotonic() - start >= 0.5
    assert pq.read_table(path).num_rows == 3
    log.add(*rows(4, seed=2))  # and again, for rows that arrive later
    wait_for(lambda: len(files(tmp_path)) == 2)


def test_many_threads_lose_and_repeat_no_row(tmp_path):
    log = make(tmp_path, flush_rows=7, flush_seconds=0.2)

    def client(worker: int) -> None:
        for i in range(40):
            x = np.full((3, 3), worker * 1000 + i, dtype=np.float32)
            log.add(x, np.asarray(["no"] * 3, dtype=object), np.full((3, 2), 0.5))

    threads = [threading.Thread(target=client, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.flush()
    written = np.concatenate([pq.read_table(p).column("x0").to_numpy() for p in files(tmp_path)])
    expected = np.repeat([w * 1000 + i for w in range(6) for i in range(40)], 3)
    np.testing.assert_array_equal(np.sort(written), np.sort(expected))


def test_a_failing_log_never_fails_a_prediction_and_says_so_once(tmp_path, capsys):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    log = make(blocked, flush_rows=1)
    log.add(*rows(2))
    log.add(*rows(2, seed=1))
    log.add(np.zeros((1, 5), np.float32), np.asarray(["no"], dtype=object), np.full((1, 2), 0.5))  # wrong width
    err = capsys.readouterr().err
    assert err.count("kdflow: inference log") == 1 and "predictions are unaffected" in err
