"""dvc.yaml and tasks/layout.py name the same files, each stage's module is one of its deps, and
each stage depends on every module of this repository that it imports."""

import ast

import pytest
import yaml

from tasks import layout
from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def paths(stage: str, kind: str) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in STAGES[stage].get(kind, [])}


def test_every_layout_output_is_declared_by_its_stage():
    outputs = {
        "prepare": {*map(str, layout.SPLIT_FILES.values()), str(layout.SCHEMA)},
        "contract": {str(layout.CONTRACT)},
        "validate": {str(layout.VALIDATION_REPORT), str(layout.DATA_DOCS), str(layout.LABEL_CHECK)},
        "teacher": {str(layout.TEACHER), str(layout.TEACHER_LOGITS), str(layout.TEACHER_METRICS), str(layout.TEACHER_HISTORY)},
        "distill": {
            str(layout.STUDENT),
            str(layout.CONTROL),
            str(layout.STUDENTS),
            str(layout.DISTILL_METRICS),
            str(layout.DISTILL_HISTORY),
        },
        "evaluate": {
            str(layout.STUDENT_ONNX),
            str(layout.STUDENT_INT8),
            str(layout.METRICS),
            str(layout.RELIABILITY),
            str(layout.LATENCY),
            str(layout.CONFUSION),
            str(layout.SEVERITY),
            str(layout.SLICES),
        },
        "champion": {str(layout.CHAMPION_DIR)},
        "register": {str(layout.REGISTERED), str(layout.REPORT)},
    }
    for stage, expected in outputs.items():
        declared = paths(stage, "outs") | paths(stage, "metrics") | paths(stage, "plots")
        assert declared == expected, stage


def test_each_stage_runs_its_module_and_depends_on_it():
    for stage, spec in STAGES.items():
        assert spec["cmd"].endswith(f"-m tasks.{stage}")
        assert f"tasks/{stage}.py" in paths(stage, "deps")
        section = {"champion": "register.model_name", "contract": "validate"}.get(stage, stage)
        assert section in paths(stage, "params")


def module_file(name: str):
    """The file of one of this repository's modules (a package's __init__.py), or None."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(path) -> set:
    """This repository's modules that `path` imports anywhere (functions too), and what they
    import; and the modules the axis registry imports by name (`Axis.measure`), when it is one."""
    from kdflow.evaluation.axes import AXES

    measured = {module_file(a.measure.partition(":")[0]) for a in AXES if a.measure is not None}
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current == module_file("kdflow.evaluation.axes"):
            todo += [m for m in measured if m is not None]
        for node in ast.walk(ast.parse(current.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in ("kdflow", "tasks") and (found := module_file(name)) is not None:
                    todo.append(found)
                    parts = name.split(".")  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
                    todo += [p for i in range(1, len(parts)) if (p := module_file(".".join(parts[:i]))) is not None]
    return seen


def test_each_stage_depends_on_every_module_it_imports():
    """Otherwise a change to such a module leaves the stage 'up to date' in DVC's eyes."""
    for stage in STAGES:
        deps = paths(stage, "deps")
        covered = lambda f, deps=deps: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
        needed = {str(f.relative_to(REPO)) for f in imported_files(REPO / "tasks" / f"{stage}.py")}
        needed -= {"tasks/__init__.py", "kdflow/__init__.py"}
        missing = sorted(f for f in needed if not covered(f))
        assert not missing, f"stage {stage} imports {missing}, which dvc.yaml does not list as its deps"


@pytest.mark.e2e
def test_raw_files_brought_with_dvc_trace_into_the_prepared_splits(tmp_path):
    """`dvc import-url` of a local file (as `dvc add`, DVC versions its bytes): `dvc repro`
    records its hash as prepare's input, and a new version of the file re-runs prepare."""
    import copy
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import TINY, make_project
    from tests.tasks.test_bad_inputs import customers

    raw = copy.deepcopy(TINY)
    raw["prepare"] = {
        "dataset": "table",
        "path": "data/raw/churn.csv",
        "table": {"label": "churned", "categorical": {"plan": "onehot"}},
    }
    root = make_project(tmp_path / "project", raw)
    (root / layout.CONTRACT).unlink(missing_ok=True)  # the bundled data's contract
    source = tmp_path / "exports" / "churn.csv"
    source.parent.mkdir()
    customers(400, seed=0).to_csv(source, index=False)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}  # as in an activated venv

    def run(*args: str) -> str:
        done = subprocess.run([str(bin_dir / "dvc"), *args], cwd=root, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def recorded() -> tuple[str, str]:
        lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["prepare"]
        raw_hash = next(d["md5"] for d in lock["deps"] if d["path"] == "data/raw")
        train = next(o["md5"] for o in lock["outs"] if o["path"] == str(layout.SPLIT_FILES["train"]))
        return raw_hash, train

    run("import-url", str(source), "data/raw/churn.csv")
    run("repro", "validate")
    first = recorded()
    assert "up to date" in run("status", "prepare")
    customers(400, seed=1).to_csv(source, index=False)  # the export changes upstream
    run("update", "data/raw/churn.csv.dvc")
    assert "changed deps" in run("status", "prepare")
    run("repro", "validate")
    second = recorded()
    assert second[0] != first[0] and second[1] != first[1]


def test_the_flow_runs_the_stages_of_dvc_yaml_in_its_order_and_every_source_is_configurable():
    import typing

    from flows.lifecycle import STAGES as FLOW
    from kdflow.config import PrepareConfig
    from kdflow.data.sources import LOADERS

    assert list(FLOW) == list(STAGES)
    assert set(LOADERS) == set(typing.get_args(PrepareConfig.model_fields["dataset"].annotation))
