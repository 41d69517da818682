"""Rebuild a registered version from its lineage, and check that it scores as registered.

`kdflow reproduce VERSION`, in order, refusing at the first step that fails and naming why:

1. clone the project's git repository and check out the version's commit (its code and params);
2. fetch its data splits and models from the DVC remote by the MD5s its ``lineage.*`` tags
   record (see `kdflow.registry.remote`: the commit's own `dvc.lock` cannot name them), check
   the MD5 of every file, and that the tags add up to the version's fingerprint;
3. score the student again with the commit's own code (a child process in the clone) on every
   untimed axis of `kdflow.evaluation.axes`, as `evaluate` did, after checking that the
   commit's params are the ones logged on the version's run;
4. compare each figure with the metric logged at registration. On the same kind of CPU, with
   the same torch, they are equal to the last bit; latency, throughput, cost and peak memory
   are timings, and are not compared.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdflow.errors import KdflowError
from kdflow.registry.client import FINGERPRINT_TAG, Registry, flatten
from kdflow.registry.lineage import file_md5, fingerprint
from kdflow.registry.remote import REMOTE_TAG, Remote, choose, fetch

COMMIT_TAG = "lineage.git_commit"
DIRTY_TAG = "lineage.git_dirty"
MODULE = "kdflow.registry.reproduce"  # run in the clone, with the clone's code


class ReproduceError(KdflowError):
    """A version that cannot be rebuilt as registered: no commit, a file missing or altered, other params."""


@dataclass(frozen=True)
class Figure:
    """One figure of the student, as registered and as measured again."""

    key: str  # the MLflow metric key, e.g. "student.accuracy"
    registered: float | None  # None: not logged at registration
    reproduced: float

    @property
    def match(self) -> bool:
        """Equal to the last bit (two NaNs are equal here)."""
        r, p = self.registered, self.reproduced
        return r is not None and (r == p or (math.isnan(r) and math.isnan(p)))


@dataclass
class Outcome:
    """What `reproduce` found: where from, which files it checked, and every figure."""

    version: int
    commit: str
    remote: Remote
    files: dict[str, str]  # every file checked (path in the project -> MD5 it has, the registered one)
    figures: list[Figure]
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Figure]:
        """The figures that differ from (or were never) registered."""
        return [f for f in self.figures if not f.match]


def reproduce(
    registry: Registry,
    root: Path,
    version: int,
    files: Mapping[str, Path],
    in_git: Mapping[str, Path] | None = None,
    into: Path | None = None,
    remote: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Rebuild `version` in a clone of the project at `root` and score it again.

    `files`: lineage name -> path of each artifact the version is made of (its fingerprint is
    over these); `in_git`: lineage name -> path of files its commit should hold (checked when
    there). `into`: a new or empty folder to rebuild in, kept; default: a temporary one.
    `remote`: a DVC remote of the project to fetch from (default: the one the version was
    pushed to, else the project's default)."""
    tags = registry.version(version).tags
    commit = tags.get(COMMIT_TAG, "")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ReproduceError(f"version {version} records no git commit ({COMMIT_TAG} = {commit!r}); it cannot be rebuilt")
    wanted = _wanted(tags, files, version)
    source = choose(root, remote, tags.get(REMOTE_TAG))
    notes = []
    if tags.get(DIRTY_TAG) == "true":
        notes.append(
            f"version {version} was registered from a work tree that differed from commit {commit[:10]} "
            f"({DIRTY_TAG}); the params check and the figures below say whether that mattered"
        )
    with _workspace(into) as where:
        say(f"cloning the project's git repository at commit {commit[:10]} into {where}")
        project = checkout(root, commit, where)
        say(f"fetching {len(wanted)} files of version {version} from DVC remote {source} by MD5")
        fetch(root, source, {path: md5 for path, (_, md5) in wanted.items()}, project)
        checked = verify(project, wanted, version, source)
        _fingerprint(tags, files, version)
        for name, path in (in_git or {}).items():
            if (expected := tags.get(f"lineage.{name}")) and (project / path).is_file():
                checked |= verify(project, {path: (name, expected)}, version, None)
            elif expected:
                notes.append(f"{path} is not in commit {commit[:10]}: its MD5 (lineage.{name}) is not checked")
        say(
            f"{len(checked)} files match the MD5s version {version} records; scoring the student with commit {commit[:10]}'s code"
        )
        result = _score_in(project, files)
    run = registry.client.get_run(registry.run_id(registry.version(version)))
    _same_params(run.data.params, result["params"], version, commit)
    figures = [Figure(key, run.data.metrics.get(key), float(value)) for key, value in result["metrics"].items()]
    return Outcome(version, commit, source, {str(p): md5 for p, md5 in checked.items()}, figures, notes)


def _wanted(tags: Mapping[str, str], files: Mapping[str, Path], version: int) -> dict[Path, tuple[str, str]]:
    """Path -> (lineage name, MD5) of every artifact, from the version's tags."""
    missing = [f"{path} (lineage.{name})" for name, path in files.items() if not tags.get(f"lineage.{name}")]
    if missing:
        raise ReproduceError(f"version {version} records no MD5 of {', '.join(missing)}; it cannot be rebuilt")
    return {Path(path): (name, tags[f"lineage.{name}"]) for name, path in files.items()}


@contextmanager
def _workspace(into: Path | None) -> Iterator[Path]:
    if into is None:
        with tempfile.TemporaryDirectory(prefix="kdflow-reproduce-") as scratch:
            yield Path(scratch) / "project"
        return
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ReproduceError(f"{into} is not an empty folder; name a new or empty one with --into")
    yield into.resolve()


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "advice.detachedHead=false", *args], cwd=cwd, capture_output=True, text=True)


def checkout(root: Path, commit: str, into: Path) -> Path:
    """Clone the git repository holding `root` into `into` and check out `commit`; returns the
    project's folder in the clone (`into`, or a sub-folder when the project is one in its repository)."""
    top = _git("rev-parse", "--show-toplevel", cwd=root)
    if top.returncode:
        raise ReproduceError(f"the project at {root} is not in a git repository: {top.stderr.strip()}")
    done = _git("clone", "--quiet", "--no-checkout", top.stdout.strip(), str(into), cwd=root)
    if done.returncode:
        raise ReproduceError(f"cannot clone the git repository at {top.stdout.strip()}: {done.stderr.strip()}")
    done = _git("checkout", "--quiet", "--detach", commit, cwd=into)
    if done.returncode:
        raise ReproduceError(
            f"commit {commit} is not in the git repository at {top.stdout.strip()} (made in another clone and not "
            f"fetched here, or history rewritten since): {done.stderr.strip()}"
        )
    return into / root.resolve().relative_to(Path(top.stdout.strip()).resolve())


def verify(project: Path, wanted: Mapping[Path, tuple[str, str]], version: int, remote: Remote | None) -> dict[Path, str]:
    """Path -> MD5 of every file of `wanted`, each checked against the MD5 the version records;
    raises ReproduceError naming a file that is missing or differs."""
    checked = {}
    for path, (name, expected) in wanted.items():
        if not (project / path).is_file():
            raise ReproduceError(
                f"{path}: missing from the rebuilt project (version {version} records lineage.{name} = {expected})"
            )
        if (found := file_md5(project / path)) != expected:
            origin = f"fetched from DVC remote {remote}" if remote else "in its commit"
            raise ReproduceError(
                f"{path}: the copy {origin} has MD5 {found}, not the {expected} version {version} records "
                f"(lineage.{name}); it was altered, and version {version} cannot be rebuilt from it"
            )
        checked[path] = found
    return checked


def _fingerprint(tags: Mapping[str, str], files: Mapping[str, Path], version: int) -> None:
    """The lineage tags add up to the fingerprint registered with them: none was changed since."""
    found = fingerprint({name: tags[f"lineage.{name}"] for name in files})
    if found != tags.get(FINGERPRINT_TAG):
        raise ReproduceError(
            f"version {version}'s lineage tags ({', '.join(f'lineage.{n}' for n in files)}) add up to fingerprint {found}, "
            f"not the {tags.get(FINGERPRINT_TAG)} registered with them ({FINGERPRINT_TAG}): a lineage tag was changed since"
        )


def _score_in(project: Path, files: Mapping[str, Path]) -> dict[str, Any]:
    """Run `rescore` in a child process in the clone, so that the commit's own code measures."""
    if not (project / Path(*MODULE.split("."))).with_suffix(".py").is_file():
        raise ReproduceError(f"the commit has no {MODULE} (it predates `kdflow reproduce`), so its own code cannot score it")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # -m must put the clone first
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "reproduced.json"
        spec = json.dumps({name: str(path) for name, path in files.items()})
        done = subprocess.run(
            [sys.executable, "-m", MODULE, str(out), spec], cwd=project, env=env, capture_output=True, text=True
        )
        if done.returncode:
            raise ReproduceError(f"scoring the student in {project} failed:\n{done.stderr.strip()[-3000:]}")
        result = json.loads(out.read_text())
    if not Path(result["code"]).resolve().is_relative_to(project.resolve()):
        raise ReproduceError(f"the student was scored by the kdflow at {result['code']}, not the commit's in {project}")
    return result


def _same_params(logged: Mapping[str, str], here: Mapping[str, str], version: int, commit: str) -> None:
    """The commit's params.yaml is the one the version was trained and judged with."""
    differ = sorted(k for k in logged.keys() | here.keys() if logged.get(k) != here.get(k))
    if differ:
        shown = "; ".join(f"{k}: logged {logged.get(k)!r}, at the commit {here.get(k)!r}" for k in differ[:5])
        more = f" (and {len(differ) - 5} more)" if len(differ) > 5 else ""
        raise ReproduceError(
            f"params.yaml at commit {commit[:10]} is not the one version {version} was registered with: {shown}{more}; "
            "it was registered from uncommitted params"
        )


def rescore(root: Path, files: Mapping[str, Path]) -> dict[str, Any]:
    """The student's row on every untimed axis, measured as `evaluate` measures it (its fidelity
    against the teacher, and its corruption accuracy relative to the teacher's, included)."""
    import torch

    from kdflow.config import load_params
    from kdflow.data.splits import load_split
    from kdflow.evaluation.robustness import feature_scale
    from kdflow.evaluation.scoring import Scoring, TestBench, corruption_accuracy, measure
    from kdflow.training.models import load_model, trusted_factories

    params = load_params(root / "params.yaml")
    train, val, test = (load_split(root / files[f"data.{split}"]) for split in ("train", "val", "test"))
    bench = TestBench(
        params.evaluate,
        torch.from_numpy(test.x),
        torch.from_numpy(test.y),
        torch.from_numpy(val.x),
        torch.from_numpy(val.y),
        scale=feature_scale(train.x),
    )
    names = trusted_factories(params.teacher.model, params.distill.student)
    path = root / files["teacher"]
    teacher = Scoring("teacher", load_model(path, names, params.teacher.source == "torchscript"), path, bench)
    bench.teacher_logits = teacher.logits
    student = Scoring("student", load_model(root / files["student"], names), root / files["student"], bench)
    row = measure(student)
    row["relative_robustness"] = row["corruption_accuracy"] / corruption_accuracy(teacher)
    return row


def _main(out: Path, spec: str) -> None:
    """In the clone: score the student and write the figures and the params (as MLflow logged them) to `out`."""
    import kdflow
    from kdflow.config import load_params

    root = Path.cwd()
    files = {name: Path(path) for name, path in json.loads(spec).items()}
    metrics = flatten({"student": rescore(root, files)})
    params = load_params(root / "params.yaml").model_dump(by_alias=True)
    result = {
        "code": kdflow.__file__,
        "params": {k: str(v) for k, v in flatten(params).items()},  # as mlflow.log_params writes them
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    }
    out.write_text(json.dumps(result))  # in measuring order, for the table


if __name__ == "__main__":
    _main(Path(sys.argv[1]), sys.argv[2])
