"""Stage fixtures shared by the stage tests: a prepared project, a trained teacher, and a
candidate distilled and judged end to end."""

from __future__ import annotations

import pytest

from kdflow.config import parse_params
from tasks import champion, contract, distill, evaluate, prepare, register, teacher, validate


@pytest.fixture
def prepared(project, tiny_params):
    prepare.run(tiny_params, project)
    contract.run(tiny_params, project)
    return project


@pytest.fixture
def trained(prepared, tiny_params):
    validate.run(tiny_params, prepared)
    teacher.run(tiny_params, prepared)
    return prepared


def with_changes(params, **sections):
    """`params` with some sections' keys replaced, validated again."""
    raw = params.model_dump(by_alias=True, exclude_unset=True)
    for section, values in sections.items():
        raw[section] = raw.get(section, {}) | values
    return parse_params(raw)


def distill_and_judge(params, root) -> dict:
    """Stages distill to register on a project whose teacher is trained; what register said."""
    distill.run(params, root)
    champion.run(params, root)
    evaluate.run(params, root)
    return register.run(params, root)
