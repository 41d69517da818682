"""The HTML report: complete, self-contained, and rendered by a real browser."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kdflow.evaluation import plots, report
from kdflow.registry.gates import Verdict
from tests.browser import chromium, needs_chromium


def row(accuracy: float, **extra) -> dict:
    return {
        "accuracy": accuracy,
        "macro_f1": accuracy - 0.01,
        "ece": 0.05,
        "ece_scaled": 0.02,
        "nll": 0.3,
        "brier": 0.1,
        "corruption_accuracy": accuracy - 0.2,
        "relative_robustness": 0.9,
        "adversarial": {"fgsm_0.1": 0.5, "pgd_0.1": 0.4},
        "ood": {"msp_auroc": 0.8, "msp_fpr95": 0.6},
        "parameters": 1000,
        "macs": 2000,
        "size_bytes": 4000,
        "latency_b1_p50_ms": 0.05,
        "latency_b1_p95_ms": 0.07,
        "latency_b64_p50_ms": 0.2,
        "latency_b64_p95_ms": 0.25,
        "throughput_b64_per_s": 320000.0,
        "usd_per_million_predictions": 0.0001,
        "peak_memory_mb_b64": 3.5,
    } | extra


def entry(candidate, reference, low, high, significant, higher=True):
    return {
        "candidate": candidate,
        "reference": reference,
        "difference": candidate - reference,
        "ci_low": low,
        "ci_high": high,
        "higher_is_better": higher,
        "significant": significant,
    }


METRICS = {
    "teacher": row(0.95),
    "student": row(0.80, fidelity={"agreement": 0.8, "kl": 0.4}),
    "control": row(0.78, fidelity={"agreement": 0.7, "kl": 0.6}),
    "champion": row(0.90, fidelity={"agreement": 0.9, "kl": 0.2}),
    "student_onnx": row(0.80, parity={"max_abs_logit_diff": 1e-6, "agreement": 1.0}, adversarial={}),
    "student_int8": row(0.79, parity={"max_abs_logit_diff": 0.02, "agreement": 0.99}, adversarial={}),
    "seeds": {"count": 1},
    "comparison": {"test_rows": 200, "latency_threads": 1, "latency_batch_sizes": [1, 64]},
    "vs_champion": {
        "version": 3,
        "reason": "the current champion, version 3",
        "resamples": 1000,
        "axes": {
            "accuracy": entry(0.80, 0.90, -0.14, -0.06, "worse"),
            "ece": entry(0.05, 0.06, -0.02, 0.01, "no", higher=False),
        },
    },
}
VERDICTS = [
    Verdict("min_student_accuracy", True, "student accuracy 0.8000 vs floor 0.5000"),
    Verdict("max_drop_vs_champion.accuracy", False, "accuracy 0.8000 vs champion v3 0.9000: worse by <0.1000>"),
]
REGISTRATION = {"model_name": "demo-student", "version": 4, "promoted": False, "champion": 3}


def write_plot_data(root: Path) -> dict[str, Path]:
    files = {
        "history": "epoch,student_val_accuracy,control_val_accuracy\n1,0.5,0.4\n2,0.7,0.6\n",
        "reliability": "model,bin,bin_upper,confidence,accuracy,count\nstudent,0,0.5,0.4,0.35,10\nstudent,1,1.0,0.8,0.85,20\n",
        "latency": "model,batch_size,p50_ms,p95_ms,accuracy\n"
        + "".join(
            f"{m},64,{ms},{ms * 1.2},{a}\n"
            for m, ms, a in (("teacher", 2.0, 0.95), ("student", 0.2, 0.8), ("champion", 0.3, 0.9), ("student_int8", 0.1, 0.79))
        ),
        "severity": "model,severity,accuracy\n"
        + "".join(f"{m},{s},{0.9 - 0.1 * s}\n" for m in ("teacher", "student") for s in (1, 2, 3)),
        "slices": "model,slice,rows,accuracy\n"
        + "".join(f"{m},class = {c},40,{a}\n" for m, a in (("teacher", 0.9), ("student", 0.8)) for c in ("a", "b")),
        "confusion": "model,actual,predicted\n"
        + "".join(f"{m},{a},{p}\n" for m in ("student", "champion") for a, p in ((0, 0), (1, 1), (1, 0), (2, 2))),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = root / f"{name}.csv"
        paths[name].write_text(text)
    return paths


@pytest.fixture
def html(tmp_path) -> str:
    svgs = {name: plots.svg(fig) for name, fig in plots.figures(write_plot_data(tmp_path))}
    return report.render(
        metrics=METRICS,
        verdicts=VERDICTS,
        registration=REGISTRATION,
        lineage={"git_commit": "0123456789abcdef", "git_dirty": "false"},
        figures=svgs,
    )


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_report_is_self_contained(html):
    parser = Tags()
    parser.feed(html)
    names = {t for t, _ in parser.tags}
    assert "script" not in names and "link" not in names and "img" not in names and "iframe" not in names
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched
    assert "@import" not in html and not re.search(r"url\((?!#)", html)  # only in-page references
    assert sum(t == "svg" for t, _ in parser.tags) == len(plots.FIGURES)


def test_the_report_says_what_happened_and_why(html):
    assert "Not promoted: version 4 failed 1 gate(s): max_drop_vs_champion.accuracy" in html
    assert "worse by &lt;0.1000&gt;" in html  # details are escaped, not injected
    assert "Candidate vs champion version 3" in html and "[-0.1400, -0.0600]" in html
    assert "significantly worse" in html and "no significant difference" in html
    for model in ("teacher", "student", "control", "champion", "student_onnx", "student_int8"):
        assert f'<td class="name">{model}</td>' in html
    assert "PGD 0.1" in html and "samples/s b64" in html and "peak MiB b64" in html


@needs_chromium
def test_the_report_renders_in_headless_chromium(html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    dom = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert 'id="gates"' in dom and 'id="models"' in dom and "Not promoted" in dom
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert image.size == (1280, 2400) and colours is not None and len(colours) > 100  # not a blank page


def test_the_report_says_what_the_label_check_and_the_slices_found(tmp_path):
    svgs = {name: plots.svg(fig) for name, fig in plots.figures(write_plot_data(tmp_path))}
    gap = {"column": "class", "value": "b", "rows": 40, "candidate": 0.8, "reference": 0.9, "gap": -0.1}
    metrics = METRICS | {
        "labels": {"action": "exclude", "checked_rows": 400, "suspected": 12, "suspected_share": 0.03, "excluded": 12},
        "comparison": METRICS["comparison"] | {"slices_vs_teacher": [gap | {"ci_low": -0.2, "ci_high": -0.02, "judged": True}]},
    }
    html = report.render(
        metrics=metrics, verdicts=VERDICTS, registration=REGISTRATION, lineage={"git_commit": "0" * 16}, figures=svgs
    )
    assert "12 of 400 training rows (3.0 %); action exclude, 12 rows excluded" in html
    assert "class = b" in html and "[-0.2000, -0.0200]" in html and "student worse" in html
