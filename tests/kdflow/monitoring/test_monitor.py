"""The monitor's steps on a table with a categorical column, end to end below the registry: the
batch read with the training categories, checked against the contract, its drift named by the
encoded feature; a batch outside the contract refused with its Data Docs."""

from __future__ import annotations

import pandas as pd
import pytest

from kdflow.config import ModelSpec, parse_params
from kdflow.monitoring import monitor as m
from kdflow.training.models import build_model
from tasks import contract, prepare
from tests.conftest import TINY
from tests.tasks.test_bad_inputs import TABLE, customers, write_csv


@pytest.fixture
def table_project(project):
    write_csv(project, customers(rows=400))
    params = parse_params(TINY | {"prepare": TABLE})
    prepare.run(params, project)
    contract.run(params, project)
    return project, params


def judge(root, params, frame: pd.DataFrame, name: str) -> m.Reading:
    path = root / f"{name}.csv"
    frame.to_csv(path, index=False)
    ref = m.Reference.load(root)
    checked = m.read(root, params, path, ref, name)
    model = build_model(ModelSpec(name="mlp", kwargs={"hidden": [8]}), ref.train.sample_shape, len(ref.schema.classes))
    return m.score(checked.batch, ref, [m.Candidate("champion", 1, model.eval())], params)


def test_a_table_batch_is_encoded_checked_and_its_drift_named(table_project):
    root, params = table_project
    fresh = customers(rows=300, seed=7)  # the same population, other rows
    steady = judge(root, params, fresh.drop(columns="churned"), "steady")
    assert steady.drifted() == [] and not steady.labelled and steady.rows == 300
    moved = judge(root, params, fresh.assign(plan="pro"), "moved")  # every customer on one plan, labelled
    plans = {"plan=basic", "plan=plus", "plan=pro"}  # the one-hot columns of the training categories
    assert moved.labelled and moved.drifted() and {t.subject for t in moved.drifted()} <= plans


def test_a_batch_outside_the_contract_is_refused_with_its_data_docs(table_project):
    root, params = table_project
    with pytest.raises(m.BatchRefused, match=r"categorical column 'plan' has 1 value\(s\) not seen in training: \['gold'\]"):
        judge(root, params, customers(rows=50, seed=3).assign(plan=["gold"] + ["basic"] * 49), "gold")
    absurd = customers(rows=50, seed=3)
    absurd.loc[4, "spend"] = 1e9
    with pytest.raises(
        m.BatchRefused,
        match=r"(?s)breaks the data contract .*batch\.spend: expect_column_values_to_be_between: 1 of 50 rows; values \[1000000000\.0\]",
    ) as refused:
        judge(root, params, absurd, "absurd")
    assert "reports/monitor/absurd/data_docs/index.html" in str(refused.value)
    assert (root / "reports/monitor/absurd/data_docs/index.html").exists()
