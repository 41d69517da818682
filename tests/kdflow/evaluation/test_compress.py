import torch

from kdflow.evaluation.compress import OnnxModel, export_onnx, parity, quantize_int8
from kdflow.training.loop import predict
from kdflow.training.models import MLP


def test_onnx_and_int8_forms_match_the_float_model(tmp_path):
    torch.manual_seed(0)
    model = MLP([40], 10, hidden=[64]).eval()
    x = torch.randn(300, 40)
    export_onnx(model, x, tmp_path / "m.onnx")
    quantize_int8(tmp_path / "m.onnx", tmp_path / "m_int8.onnx")
    reference = predict(model, x)
    onnx_model, int8 = OnnxModel(tmp_path / "m.onnx"), OnnxModel(tmp_path / "m_int8.onnx")
    exact = parity(reference, predict(onnx_model, x))
    assert exact["max_abs_logit_diff"] < 1e-4 and exact["agreement"] == 1.0
    quantized = parity(reference, predict(int8, x))
    assert 0 < quantized["max_abs_logit_diff"] < 0.1 and quantized["agreement"] > 0.95
    assert int8.size_bytes < onnx_model.size_bytes  # int8 weights are a quarter the size


def test_parity_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.9, 0.2], [0.6, 0.5]])
    assert parity(a, b) == {"max_abs_logit_diff": 0.6000000238418579, "agreement": 0.5}
