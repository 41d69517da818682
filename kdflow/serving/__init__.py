"""Serving the registered student: `pyfunc` logs it (stage register), `model` is what
`mlflow models serve` runs (and imports no kdflow)."""
