"""Promotion gates: small checks over evaluation metrics, each giving a verdict with its reason.

A challenger becomes champion only when every gate passes; every verdict is recorded on the
model version, so "why was this promoted (or not)?" has an answer in the registry. Each gate
is set per axis in `register.gates` (params.yaml); a gate left out is off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kdflow.config import GatesConfig
from kdflow.errors import InvalidSetup
from kdflow.evaluation.axes import BY_NAME, get
from kdflow.evaluation.compare import worse_by


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'}: {self.detail}"


@dataclass(frozen=True)
class Bound:
    """The student is good enough on one axis (kdflow.evaluation.axes): at least `limit` where
    higher is better (a floor), at most where lower is better (a ceiling)."""

    name: str
    axis: str
    limit: float
    batch: int | None = None  # for an axis measured per latency batch size

    def __call__(self, metrics: dict) -> Verdict:
        axis = get(self.axis)
        value = axis.read(metrics["student"], self.batch)
        if value is None:
            return Verdict(self.name, False, f"the student has no {axis.title(batch=self.batch)} in the metrics")
        floor = axis.better == "higher"
        passed = value >= self.limit if floor else value <= self.limit
        threads = metrics.get("comparison", {}).get("latency_threads") if axis.timed else None
        where = f" ({threads} thread(s))" if threads else ""
        return Verdict(
            self.name,
            passed,
            f"student {axis.said(self.batch)} {axis.amount(value)}{where} vs {'floor' if floor else 'ceiling'} {axis.amount(self.limit)}",
        )


@dataclass(frozen=True)
class BeatsControl:
    """Distillation paid off: the student gains at least `min_gain` accuracy over the control
    (the same student trained without the teacher), mean over the seeds.

    With a `min_gain` of 0 or less (distillation must not cost more than that) it fails, like
    the champion gates, only on evidence: when the whole 95 % bootstrap interval of the gain is
    below `min_gain`, so a tie within noise on a small test split is not refused. A positive
    `min_gain` is a gain to show: the mean must reach it. The interval resamples the test
    samples; it does not see how much another training seed would move either model."""

    min_gain: float
    name: str = "min_gain_over_control"

    def __call__(self, metrics: dict) -> Verdict:
        seeds = metrics.get("seeds") or {}
        if "student_minus_control_ci_high" in seeds and self.min_gain <= 0:
            gain, low, high = (seeds[f"student_minus_control_{k}"] for k in ("mean", "ci_low", "ci_high"))
            over = f" over {seeds['count']} seeds" if seeds.get("count", 1) > 1 else ""
            return Verdict(
                self.name,
                high >= self.min_gain,
                f"mean student - control accuracy{over} {gain:+.4f} (95% CI {low:+.4f} to {high:+.4f}) "
                f"vs required {self.min_gain:+.4f}",
            )
        # Metrics without an interval (from an earlier kdflow): the point estimate, as then.
        if seeds.get("count", 1) > 1:
            gain = seeds["student_minus_control_mean"]
            what = f"mean student - control accuracy over {seeds['count']} seeds {gain:+.4f}"
        else:
            gain = metrics["student"]["accuracy"] - metrics["control"]["accuracy"]
            what = f"student - control accuracy {gain:+.4f}"
        return Verdict(self.name, gain >= self.min_gain, f"{what} vs required {self.min_gain:+.4f}")


@dataclass(frozen=True)
class NoRegression:
    """No silent regression on one axis: the student may be worse than the champion it is
    judged against by at most `max_drop`, and it fails only when the whole bootstrap interval of
    the difference says it is worse by more. Without a champion, or with one for other data
    (other inputs or classes), there is nothing to regress from, and the gate passes saying why.
    A champion that exists but could not be judged against (`unjudged`: its artifacts could not
    be fetched intact, or its checkpoint was refused) fails the gate: no promotion on a
    comparison that was never made."""

    axis: str
    max_drop: float

    @property
    def name(self) -> str:
        """The gate's name in verdicts and tags: ``max_drop_vs_champion.<axis>``."""
        return f"max_drop_vs_champion.{self.axis}"

    def __call__(self, metrics: dict) -> Verdict:
        reference = metrics.get("vs_champion") or {"version": None, "reason": "no comparison was made"}
        if reference.get("unjudged"):
            return Verdict(
                self.name,
                False,
                f"{reference['reason']}; not promoted on a comparison never made "
                "(fix the registry and run again, or promote by hand with `kdflow promote --force`)",
            )
        if "axes" not in reference:  # nothing to regress from: no champion, or not comparable
            prefix = "" if reference["version"] is not None else "no champion to compare with: "
            return Verdict(self.name, True, f"{prefix}{reference['reason']}")
        entry = reference["axes"].get(self.axis)
        if entry is None:  # an axis this test data does not have (no slice large enough to judge)
            return Verdict(
                self.name,
                False,
                f"{self.axis} was not compared with champion v{reference['version']}: this run has no such figure",
            )
        drop, low, high = worse_by(entry)
        return Verdict(
            self.name,
            low <= self.max_drop,
            f"{self.axis} {entry['candidate']:.4f} vs champion v{reference['version']} {entry['reference']:.4f}: "
            f"worse by {drop:+.4f} (95% CI {low:+.4f} to {high:+.4f}) vs tolerated {self.max_drop:.4f}",
        )


@dataclass(frozen=True)
class NoSliceDrop:
    """Distillation made no slice of the test data (kdflow.evaluation.slices) worse than the
    teacher served it by more than `max_drop`: it fails only when a judged slice's whole 95 %
    bootstrap interval of the student-minus-teacher accuracy gap lies below -`max_drop`, so a
    small slice's noise is not a failure. Without slices (evaluate.slices empty) it fails:
    a gate that was asked for and could not judge."""

    max_drop: float
    name: str = "max_slice_drop_vs_teacher"

    def __call__(self, metrics: dict) -> Verdict:
        gaps = metrics.get("comparison", {}).get("slices_vs_teacher")
        if not gaps:
            return Verdict(self.name, False, "no slices were measured: name columns in evaluate.slices (and run evaluate again)")
        judged = [g for g in gaps if g["judged"]]
        if not judged:
            return Verdict(self.name, False, "every slice is smaller than evaluate.min_slice_rows: none could be judged")
        worst = min(judged, key=lambda g: g["ci_high"])
        name = f"{worst['column']} = {worst['value']}"
        return Verdict(
            self.name,
            worst["ci_high"] >= -self.max_drop,
            f"worst slice vs the teacher, {name} ({worst['rows']} rows): student - teacher accuracy {worst['gap']:+.4f} "
            f"(95% CI {worst['ci_low']:+.4f} to {worst['ci_high']:+.4f}) vs tolerated drop {self.max_drop:.4f}"
            f"; {len(judged)} slice(s) judged",
        )


class GateSettingError(InvalidSetup):
    """A gate in params.yaml names an axis the registry lacks, or a batch size not measured."""


def check_settings(cfg: GatesConfig, batch_sizes: Sequence[int]) -> None:
    """Refuse, naming the key, a `register.gates.bounds` entry that is not an axis with a better
    side, or that names a batch size evaluate does not measure (`evaluate.latency.batch_sizes`;
    peak memory only at the largest)."""
    for key in cfg.bounds:
        name, _, batch = key.partition(".b")
        axis = BY_NAME.get(name)
        where = f"register.gates.bounds.{key}"
        if axis is None or axis.better is None:
            known = ", ".join(a.name for a in BY_NAME.values() if a.better is not None)
            raise GateSettingError(f"{where}: not an axis with a better side; those are: {known}")
        if axis.per_batch != batch.isdigit():
            raise GateSettingError(
                f"{where}: "
                + (f"say the batch size, as {name}.b{max(batch_sizes)}" if axis.per_batch else f"{name} has no batch size")
            )
        if axis.per_batch:
            measured = [max(batch_sizes)] if axis.only_largest else sorted(batch_sizes)
            if int(batch) not in measured:
                raise GateSettingError(f"{where}: batch size {batch} is not measured; evaluate measures {name} at {measured}")


def gates_from_config(cfg: GatesConfig) -> list:
    """The gates `register.gates` turns on, in a fixed order."""
    gates: list = [Bound("min_student_accuracy", "accuracy", cfg.min_student_accuracy), BeatsControl(cfg.min_gain_over_control)]
    if cfg.max_ece is not None:
        gates.append(Bound("max_ece", "ece", cfg.max_ece))
    if cfg.max_membership_auc is not None:
        gates.append(Bound("max_membership_auc", "membership_auc", cfg.max_membership_auc))
    gates += [Bound(f"max_p95_latency_ms.b{b}", "latency_p95_ms", ms, b) for b, ms in sorted(cfg.max_p95_latency_ms.items())]
    if cfg.min_relative_robustness is not None:
        gates.append(Bound("min_relative_robustness", "relative_robustness", cfg.min_relative_robustness))
    if cfg.max_slice_drop_vs_teacher is not None:
        gates.append(NoSliceDrop(cfg.max_slice_drop_vs_teacher))
    gates += [NoRegression(axis, drop) for axis, drop in cfg.max_drop_vs_champion.items()]
    for key, limit in cfg.bounds.items():
        name, _, batch = key.partition(".b")
        gates.append(Bound(f"bounds.{key}", name, limit, int(batch) if batch else None))
    return gates


def check(metrics: dict, cfg: GatesConfig) -> list[Verdict]:
    """The verdict of every gate `cfg` turns on, judged on these `metrics`, in `gates_from_config` order."""
    return [gate(metrics) for gate in gates_from_config(cfg)]
