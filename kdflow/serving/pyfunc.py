"""What stage `register` logs as the served model: the student as an MLflow pyfunc "model from
code" (`kdflow/serving/model.py`), with a kdflow-free torch form of it beside its ONNX forms.

The torch form is a torch.export program (``.pt2``) with a dynamic batch dimension: it carries
the graph and the weights but no Python code, loads without kdflow, and (unlike TorchScript,
deprecated by torch 2.13 with a warning at every call) is what torch recommends.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdflow.config import ServeConfig
from kdflow.training.models import for_inference

MODEL_CODE = Path(__file__).with_name("model.py")
# What the serving environment needs; pinned to what registered the model.
REQUIREMENTS = ("torch", "onnxruntime", "numpy", "pandas", "pyarrow")


def export_torch(model: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """The model in eval mode (batch norms folded) as a torch.export program; any batch size."""
    program = torch.export.export(
        for_inference(model), (example[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},), strict=False
    )
    torch.export.save(program, str(path))


def signature(classes: list[str], sample_shape: list[int]) -> Any:
    """Input: a float32 tensor ``[-1, *sample_shape]``; output: one column per name `model.py` answers."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs: list[ColSpec | TensorSpec] = [ColSpec("string", "label")]
    outputs += [ColSpec("double", f"proba_{c}") for c in classes]
    outputs += [ColSpec("double", f"logit_{c}") for c in classes]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *sample_shape))]),
        outputs=Schema(outputs),
    )


def requirements() -> list[str]:
    """Given, not inferred: inference is slow and would pick up the whole environment."""
    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_student(
    student: nn.Module,
    example: np.ndarray,
    *,
    classes: list[str],
    schema: Path,
    onnx: Path,
    int8: Path,
    serve: ServeConfig,
    model_id: str,
    name: str = "student",
) -> Any:
    """Log the served model on the active MLflow run; returns MLflow's ModelInfo. `model_id`
    names the model in the inference log (the registering run's id)."""
    import mlflow

    from kdflow.serving.model import ARTIFACTS, INFO_ARTIFACT, LOG_ENV, SCHEMA_ARTIFACT

    sample_shape = list(example.shape[1:])
    # params.yaml's own names: MLflow logs a model's config as its run's params too (see model.py).
    config = {f"serve.{key}": value for key, value in serve.model_dump().items()}
    with tempfile.TemporaryDirectory() as scratch:
        program, info = Path(scratch) / "student.pt2", Path(scratch) / "model_info.json"
        export_torch(student, torch.from_numpy(example), program)
        info.write_text(json.dumps({"input_shape": sample_shape, "model": model_id}))
        artifacts = {ARTIFACTS["torch"]: program, ARTIFACTS["onnx"]: onnx, ARTIFACTS["int8"]: int8}
        artifacts |= {SCHEMA_ARTIFACT: schema, INFO_ARTIFACT: info}
        # MLflow loads the model and answers the input example to check it: not a request to log,
        # and the torch runtime's thread count is the server's, not this process's.
        threads, saved = torch.get_num_threads(), os.environ.get(LOG_ENV)
        os.environ[LOG_ENV] = ""
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(MODEL_CODE),
                artifacts={k: str(v) for k, v in artifacts.items()},
                model_config=config,
                signature=signature(classes, sample_shape),
                input_example=example,
                pip_requirements=requirements(),
            )
        finally:
            torch.set_num_threads(threads)
            if saved is None:
                os.environ.pop(LOG_ENV, None)
            else:
                os.environ[LOG_ENV] = saved
