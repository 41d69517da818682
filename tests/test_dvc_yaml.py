"""dvc.yaml and tasks/layout.py name the same files, and each stage's module is one of its deps."""

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
        "validate": {str(layout.VALIDATION_REPORT), str(layout.DATA_DOCS)},
        "teacher": {str(layout.TEACHER), str(layout.TEACHER_LOGITS), str(layout.TEACHER_METRICS), str(layout.TEACHER_HISTORY)},
        "distill": {str(layout.STUDENT), str(layout.CONTROL), str(layout.STUDENTS), str(layout.DISTILL_METRICS), str(layout.DISTILL_HISTORY)},
        "evaluate": {str(layout.STUDENT_ONNX), str(layout.STUDENT_INT8), str(layout.METRICS), str(layout.RELIABILITY), str(layout.LATENCY), str(layout.CONFUSION), str(layout.SEVERITY)},
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
