import pytest

from kdflow.config import ModelSpec
from kdflow.evaluation.memory import PeakMemory, supported
from kdflow.training.models import save_checkpoint

pytestmark = pytest.mark.skipif(not supported(), reason="peak memory is measured through Linux's /proc")


def checkpoint(path, hidden: list[int]):
    spec = ModelSpec(name="mlp", kwargs={"hidden": hidden})
    from kdflow.training.models import build_model

    model = build_model(spec, [64], 10)
    save_checkpoint(path, model, spec, [64], 10)
    return sum(p.numel() * 4 for p in model.parameters()) / 2**20


def test_peak_memory_counts_the_weights_and_the_batch(tmp_path):
    big = checkpoint(tmp_path / "big.pt", [2048, 2048])  # 16.6 MiB of float32 weights
    checkpoint(tmp_path / "small.pt", [16])
    with PeakMemory([64], batch_size=8) as probe:
        futures = [probe.submit("torch", tmp_path / name) for name in ("big.pt", "small.pt")]
        peak_big, peak_small = (probe.result(f) for f in futures)
    # The small model's figure is mostly what loading and a first forward cost any model; the
    # big one adds at least its weights on top.
    assert big > 16 and peak_big - peak_small >= 0.95 * big
    with PeakMemory([64], batch_size=4096) as probe:  # 4096 x 2048 activations: 32 MiB each
        peak_big_batch = probe.result(probe.submit("torch", tmp_path / "big.pt"))
    assert peak_big_batch >= peak_big + 32
