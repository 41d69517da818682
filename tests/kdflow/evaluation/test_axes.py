"""The axis registry: every entry resolves, and one registration is all a new axis needs to be
measured, shown in the report and the summary, gated and (per sample) compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdflow.evaluation import axes, scoring
from kdflow.evaluation.axes import AXES, BY_NAME, COMPARED, Axis, get
from kdflow.evaluation.compare import STATISTICS


def test_names_are_unique_and_every_measure_resolves():
    assert len(BY_NAME) == len(AXES)
    for axis in AXES:
        if axis.measure is not None:
            assert callable(axis.measurer()), axis.name
    assert set(COMPARED) == set(STATISTICS)
    assert all(BY_NAME[name].better in ("higher", "lower") for name in COMPARED)
    with pytest.raises(KeyError, match="no evaluation axis 'nope'"):
        get("nope")


def test_reading_nested_globbed_and_per_batch_paths():
    row = {"accuracy": 0.9, "adversarial": {"fgsm_0.1": 0.5, "pgd_0.2": 0.4}, "latency_b8_p95_ms": 1.5, "ood": {}}
    assert get("accuracy").read(row) == 0.9
    pgd = get("adversarial_accuracy")
    assert pgd.read(row) == 0.4 and pgd.title(row) == "PGD 0.2"
    p95 = get("latency_p95_ms")
    assert p95.read(row, 8) == 1.5 and p95.read(row, 1) is None and p95.title(batch=8) == "p95 ms b8"
    assert get("msp_auroc").read(row) is None and get("msp_auroc").format(None) == "–"
    assert get("size_bytes").format(12_345) == "12.3"  # shown in kB
    with pytest.raises(ValueError, match="one value per batch size"):
        p95.read(row)


def sharpness(s: scoring.Scoring) -> float:
    """A stand-in for a new axis: the mean top logit."""
    return s.logits.max(-1).values.mean().item()


def test_a_new_axis_is_one_registration(monkeypatch):
    """Registered once, it is measured, becomes a report column and a summary column, and can
    be gated like any other axis."""
    import torch

    from flows.summary import comparison_rows
    from kdflow.config import EvaluateConfig
    from kdflow.evaluation.report import columns
    from kdflow.registry.gates import Bound

    new = Axis("sharpness", "sharpness", "higher", measure=f"{__name__}:sharpness", summary=True)
    monkeypatch.setattr(axes, "AXES", (*AXES, new))
    monkeypatch.setitem(axes.BY_NAME, "sharpness", new)
    for module in ("kdflow.evaluation.scoring", "kdflow.evaluation.report", "flows.summary"):
        monkeypatch.setattr(f"{module}.AXES", axes.AXES)

    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    bench = scoring.TestBench(EvaluateConfig(latency={"batch_sizes": [4]}), x, y, x[:10], y[:10])
    model = torch.nn.Linear(5, 3)
    row = scoring.measure(scoring.Scoring("teacher", model, Path(__file__), bench))  # the teacher: no fidelity to need
    assert row["sharpness"] == pytest.approx(model(x).max(-1).values.mean().item())

    metrics = {"student": row, "comparison": {"latency_batch_sizes": [4]}}
    assert "sharpness" in [c.label(metrics) for c in columns(metrics)]
    assert comparison_rows({"metrics": metrics})[0]["sharpness"] == pytest.approx(row["sharpness"], abs=1e-4)
    verdict = Bound("min_sharpness", "sharpness", 1e9)(metrics)
    assert not verdict.passed and "vs floor" in verdict.detail


def test_any_axis_with_a_better_side_can_be_gated_from_params(tiny_params):
    from kdflow.config import GatesConfig, parse_params
    from kdflow.registry.gates import GateSettingError, check, check_settings

    cfg = GatesConfig(min_student_accuracy=0.0, min_gain_over_control=-1.0, bounds={"macro_f1": 0.5, "latency_p50_ms.b1": 2.0})
    metrics = {
        "student": {"accuracy": 0.9, "macro_f1": 0.4, "latency_b1_p50_ms": 1.0},
        "control": {"accuracy": 0.9},
        "comparison": {"latency_threads": 1},
    }
    verdicts = {v.gate: v for v in check(metrics, cfg)}
    assert (
        not verdicts["bounds.macro_f1"].passed and "student macro-F1 0.4000 vs floor 0.5000" in verdicts["bounds.macro_f1"].detail
    )
    assert verdicts["bounds.latency_p50_ms.b1"].passed and "vs ceiling 2.000" in verdicts["bounds.latency_p50_ms.b1"].detail
    for bad, message in (
        ({"parameters": 10}, "not an axis with a better side"),
        ({"latency_p50_ms": 1}, "say the batch size"),
        ({"ece.b1": 0.1}, "ece has no batch size"),
        ({"latency_p50_ms.b64": 1}, r"batch size 64 is not measured; evaluate measures latency_p50_ms at \[1, 256\]"),
        ({"peak_memory_mb.b1": 100}, r"measures peak_memory_mb at \[256\]"),
    ):
        params = parse_params({"launch": {"command": "python"}, "register": {"gates": {"bounds": bad}}})  # the shape is fine
        with pytest.raises(GateSettingError, match=message):
            check_settings(params.register_.gates, [1, 256])
