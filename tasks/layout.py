"""Where each stage reads and writes, relative to the project root. dvc.yaml names the same paths
(tests/test_dvc_yaml.py keeps the two in step)."""

from pathlib import Path

DATA = Path("data/prepared")
SPLIT_FILES = {name: DATA / f"{name}.npz" for name in ("train", "val", "test")}

SCHEMA = DATA / "schema.json"  # the names of the features, the label and the classes
RAW = Path("data/raw")  # the user's own data files (prepare.path), tracked by DVC

CONTRACT = Path("data/contract.yaml")  # learnt once from train, then reviewed and versioned
VALIDATION_REPORT = Path("reports/validation.json")
DATA_DOCS = Path("reports/data_docs")  # Great Expectations Data Docs of the last validation (HTML)
# The label check's outcome alone (kdflow.data.labels.outcome): the training rows excluded for
# their labels, by position. Deterministic, unlike the report (timings), so that training reruns
# only when the choice of rows changes.
LABEL_CHECK = Path("reports/label_check.json")

TEACHER = Path("models/teacher.pt")
TEACHER_METRICS = Path("reports/teacher.json")
TEACHER_HISTORY = Path("reports/plots/teacher_history.csv")

STUDENT = Path("models/student.pt")
CONTROL = Path("models/control.pt")
DISTILL_METRICS = Path("reports/distill.json")
DISTILL_HISTORY = Path("reports/plots/distill_history.csv")

METRICS = Path("reports/metrics.json")
STUDENT_ONNX = Path("models/student.onnx")  # deployable forms, written by evaluate
STUDENT_INT8 = Path("models/student_int8.onnx")
RELIABILITY = Path("reports/plots/reliability.csv")
LATENCY = Path("reports/plots/latency.csv")
CONFUSION = Path("reports/plots/confusion.csv")  # one row per test sample and model
SEVERITY = Path("reports/plots/corruption_severity.csv")
SLICES = Path("reports/plots/slices.csv")  # accuracy per slice of evaluate.slices and model

# The model the candidate is judged against, fetched from the registry by stage `champion`:
# champion.json always, student.pt when there is one.
CHAMPION_DIR = Path("models/champion")
CHAMPION_INFO = CHAMPION_DIR / "champion.json"
CHAMPION_MODEL = CHAMPION_DIR / "student.pt"

REGISTERED = Path("reports/registered.json")
REPORT = Path("reports/report.html")  # the self-contained report people read
FAILED_STAGE = Path("reports/failed_stage.json")  # why the last stage that failed did (not a DVC output)

# The artifacts a candidate is made of: their MD5s are its lineage, and their fingerprint
# identifies it in the registry.
LINEAGE_FILES = {
    "data.train": SPLIT_FILES["train"],
    "data.val": SPLIT_FILES["val"],
    "data.test": SPLIT_FILES["test"],
    "teacher": TEACHER,
    "student": STUDENT,
    "control": CONTROL,
}

TEACHER_LOGITS = Path("models/teacher_logits.pt")  # the teacher-logit cache (see tasks/teacher.py)
STUDENTS = Path("models/seeds")  # one student and one control per seed in distill.seeds
STATE = Path("checkpoints")  # resumable training state; not a DVC output, removed when done
TEACHER_IMPORT = Path("teacher_import")
