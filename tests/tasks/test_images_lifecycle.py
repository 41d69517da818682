"""Image folders through every stage, on real images that ship offline (scikit-learn's digits
written as PNG files), with a ResNet teacher and a small CNN student trained with crop, flip
and mixup. Tiny settings: this checks that the images source works end to end, not how well
(bench/real_images.py measures that)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from kdflow.io import read_json
from kdflow.registry.client import CHALLENGER, Registry
from tasks import champion, contract, distill, evaluate, layout, prepare, register, teacher, validate
from tests.tasks.conftest import with_changes

AUGMENT = {"crop": 1, "flip": True, "mixup": 0.2}


def digit_pngs(root, per_class: int = 25) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(10):
        for i in np.flatnonzero(digits.target == label)[:per_class]:
            path = root / "data/raw/digits" / str(label) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8)).save(path)


def test_digit_images_go_through_every_stage_to_the_registry(project, tiny_params):
    digit_pngs(project)
    train = {"epochs": 2, "batch_size": 32, "threads": 1, "augment": AUGMENT}
    params = with_changes(
        tiny_params,
        prepare={"dataset": "images", "path": "data/raw/digits", "images": {"size": [12, 12]}},
        teacher={"model": {"name": "resnet", "kwargs": {"width": 8, "blocks": [1, 1]}}, "train": train},
        distill={
            "student": {"name": "resnet", "kwargs": {"width": 4, "blocks": [1, 1]}},
            "train": train,
            "losses": [{"name": "hinton", "temperature": 4.0}, {"name": "ce", "weight": 0.5}],
        },
    )
    rows = prepare.run(params, project)
    assert sum(rows.values()) == 250
    schema = read_json(project / layout.SCHEMA)
    assert schema["classes"] == [str(d) for d in range(10)] and len(schema["features"]) == 144 and schema["shared_scale"]
    contract.run(params, project)
    assert "ranges:\n  '*': [" in (project / layout.CONTRACT).read_text()  # pixels share one range
    report = validate.run(params, project)
    assert report["passed"], report["problems"]
    teacher.run(params, project)
    distill.run(params, project)
    champion.run(params, project)
    metrics = evaluate.run(params, project)
    student = metrics["student"]
    assert {name.rsplit("_s", 1)[0] for name in student["corruptions"]} == {"gaussian_noise", "blur", "contrast"}
    assert 0.0 <= student["ood"]["msp_auroc"] <= 1.0 and "fgsm_0.05" in student["adversarial"]
    assert metrics["student_onnx"]["parity"]["max_abs_logit_diff"] < 1e-3
    registered = register.run(params, project)
    registry = Registry(params.register_.model_name)
    version = registry.version(registered["version"])
    assert registry.alias(CHALLENGER).version == version.version
    assert len(version.tags["lineage.data.train"]) == 32 and len(version.tags["lineage.student"]) == 32
