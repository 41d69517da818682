"""The served model as MLflow logs and loads it (real MLflow, SQLite tracking): labels are class
names, probabilities are the softmax of the logits, every runtime answers like the student, the
signature says so, and the model runs where kdflow is not installed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kdflow.config import ModelSpec, ServeConfig
from kdflow.data.splits import Schema
from kdflow.evaluation.compress import export_onnx, quantize_int8
from kdflow.serving.model import LOG_ENV, RUNTIME_ENV
from kdflow.serving.pyfunc import export_torch, log_student
from kdflow.training.models import build_model

CLASSES = ["cat", "dog", "bird", "fish"]
FEATURES = [f"f{i}" for i in range(12)]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict:
    """A small standardised MLP logged as register logs it; the model folder downloaded."""
    import mlflow

    tmp = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, len(FEATURES))) * 3 + 1).astype(np.float32)
    student = build_model(ModelSpec(name="mlp", kwargs={"hidden": [16]}, standardize=True), [12], 4, seed=0, inputs=x).eval()
    export_onnx(student, torch.from_numpy(x), tmp / "student.onnx")
    quantize_int8(tmp / "student.onnx", tmp / "student_int8.onnx")
    Schema(features=FEATURES, label="animal", classes=CLASSES).save(tmp / "schema.json")
    baked = tmp / "baked_log"
    serve = ServeConfig(inference_log=str(baked), log_flush_rows=1000, log_flush_seconds=0.1)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        with mlflow.start_run() as run:
            info = log_student(
                student,
                x[:5],
                classes=CLASSES,
                schema=tmp / "schema.json",
                onnx=tmp / "student.onnx",
                int8=tmp / "student_int8.onnx",
                serve=serve,
                model_id=run.info.run_id,
            )
        local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(tmp / "downloaded"))
        run_params = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    with torch.inference_mode():
        logits = student(torch.from_numpy(x)).numpy()
    return {
        "path": local,
        "x": x,
        "logits": logits,
        "baked": baked,
        "serve": serve,
        "run_id": run.info.run_id,
        "run_params": run_params,
        "threads": (threads, torch.get_num_threads()),
    }


def load(logged: dict, config: dict | None = None):
    """The logged model, as a server loads it; `config` overrides some of its model_config."""
    import mlflow

    return mlflow.pyfunc.load_model(logged["path"], model_config=config)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_answers_class_names_probabilities_and_logits(logged, monkeypatch):
    monkeypatch.setenv(LOG_ENV, "")  # no log here
    out = load(logged).predict(logged["x"])
    assert list(out.columns) == ["label", *(f"proba_{c}" for c in CLASSES), *(f"logit_{c}" for c in CLASSES)]
    assert len(out) == len(logged["x"])
    logits = out[[f"logit_{c}" for c in CLASSES]].to_numpy()
    proba = out[[f"proba_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(logits, logged["logits"], atol=1e-5)  # the student's own logits
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(proba, softmax(logits), atol=1e-12)
    assert out["label"].tolist() == [CLASSES[i] for i in logged["logits"].argmax(1)]
    assert len(set(out["label"])) > 1  # not a constant answer


@pytest.mark.parametrize("runtime", ["onnx", "int8"])
def test_each_runtime_answers_like_the_torch_model(logged, monkeypatch, runtime):
    monkeypatch.setenv(LOG_ENV, "")
    expected = [CLASSES[i] for i in logged["logits"].argmax(1)]
    by_config = load(logged, {"serve.runtime": runtime})
    monkeypatch.setenv(RUNTIME_ENV, runtime)
    by_env = load(logged, {"serve.runtime": "torch"})  # the server's environment wins over the model's config
    for model in (by_config, by_env):
        assert model.unwrap_python_model().runtime == runtime
        labels = model.predict(logged["x"])["label"].tolist()
        agree = np.mean([a == b for a, b in zip(labels, expected, strict=True)])
        assert agree == 1.0 if runtime == "onnx" else agree >= 0.9


def test_an_unknown_runtime_is_refused_naming_where_it_came_from(logged, monkeypatch):
    monkeypatch.setenv(RUNTIME_ENV, "tensorrt")
    with pytest.raises(Exception, match=f"{RUNTIME_ENV}: unknown runtime 'tensorrt'; one of torch, onnx, int8"):
        load(logged)


def test_the_signature_says_what_goes_in_and_comes_out(logged):
    import mlflow

    signature = mlflow.models.Model.load(logged["path"]).signature
    (tensor,) = signature.inputs.inputs
    assert tensor.type == np.dtype(np.float32) and tensor.shape == (-1, len(FEATURES))
    outputs = {spec.name: spec.type.name for spec in signature.outputs.inputs}
    assert outputs == {"label": "string"} | {f"proba_{c}": "double" for c in CLASSES} | {f"logit_{c}": "double" for c in CLASSES}
    assert list(outputs) == list(load(logged, {"serve.inference_log": None}).predict(logged["x"][:1]).columns)


def test_logging_leaves_no_trace_but_the_model(logged):
    time.sleep(0.3)  # thrice the baked flush time
    assert not logged["baked"].exists()  # MLflow answers the input example at logging: not a request to log
    before, after = logged["threads"]
    assert after == before  # the torch runtime's one thread is for the server, not the registering process
    # The config MLflow records on the run is params.yaml's serve section under its own names,
    # the same keys and values kdflow logs there (`kdflow reproduce` compares them with params.yaml).
    assert logged["run_params"] == {f"serve.{k}": str(v) for k, v in logged["serve"].model_dump().items()}


def test_serving_logs_where_told(logged, monkeypatch, tmp_path):
    monkeypatch.delenv(LOG_ENV, raising=False)
    model = load(logged)
    model.predict(logged["x"][:3])
    model.unwrap_python_model().log.flush()
    assert len(list(logged["baked"].rglob("*.parquet"))) == 1
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "elsewhere"))  # the server's environment wins
    model = load(logged)
    model.predict(logged["x"][:3])
    model.unwrap_python_model().log.flush()
    assert len(list((tmp_path / "elsewhere").rglob("*.parquet"))) == 1
    assert model.unwrap_python_model().log.model == logged["run_id"]
    monkeypatch.setenv(LOG_ENV, "")  # set but empty: off
    assert load(logged).unwrap_python_model().log is None


def test_the_served_code_imports_no_kdflow_and_runs_without_it(logged):
    code = Path(logged["path"]) / "model.py"
    imported = set()
    for node in ast.walk(ast.parse(code.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "atexit", "itertools", "json", "os", "signal", "sys", "threading", "time"} | {
        "collections",
        "datetime",
        "pathlib",
        "typing",
        "mlflow",
        "numpy",
        "pandas",
        "pyarrow",
        "torch",
        "onnxruntime",
    }
    # And for real: a process where `import kdflow` fails loads it and answers.
    script = (
        "import sys; sys.modules['kdflow'] = None\n"
        "import mlflow, numpy as np\n"
        f"m = mlflow.pyfunc.load_model({logged['path']!r})\n"
        f"print(m.predict(np.zeros((2, {len(FEATURES)}), np.float32))['label'].tolist())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDFLOW_")} | {LOG_ENV: ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(ast.literal_eval(done.stdout.strip().splitlines()[-1])) <= set(CLASSES)


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        (ModelSpec(name="mlp", kwargs={"hidden": [8]}), [3, 4, 4]),
        (ModelSpec(name="cnn1d", kwargs={"channels": 4}), [16]),
        (ModelSpec(name="resnet", kwargs={"width": 4, "blocks": [1, 1]}, standardize=True), [3, 8, 8]),
    ],
)
def test_the_torch_form_takes_any_batch_size_for_every_zoo_architecture(spec, shape, tmp_path):
    x = torch.randn(6, *shape)
    model = build_model(spec, shape, 3, seed=0, inputs=x.numpy()).eval()
    export_torch(model, x, tmp_path / "m.pt2")
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    with torch.inference_mode():
        for batch in (1, 2, 5):
            torch.testing.assert_close(loaded(x[:batch]), model(x[:batch]), atol=1e-5, rtol=1e-5)
