"""pysparse.quant.QAT: fake-quant int8 with straight-through gradients, stepped by distill.fit beside
the pruner; the converted int8 model computes what the fake-quant forward computed, and QAT beats
post-training quantization where PTQ loses (weights with one outlier per row)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pysparse as ps  # noqa: E402
from pysparse import distill, prune, quant  # noqa: E402
from pysparse.formats import quantize_rows  # noqa: E402
from _int8_models import pruned_mlp  # noqa: E402

INT8_ALL = {"dtype": "int8", "formats": ("dense",), "min_speedup": 1e-9}


def dequant_rows(a: np.ndarray) -> np.ndarray:
    q, s = quantize_rows(a)
    return q.astype(np.float64) * s[:, None]


def test_fake_quant_matches_the_kernel_contract_and_gradients_pass_straight_through():
    torch.manual_seed(0)
    m = torch.nn.Linear(13, 5)
    with torch.no_grad():
        m.weight[1] = 0  # an all-zero row: scale 0, stays zero
        m.weight[2, :6] = 0
    x = torch.randn(4, 13, requires_grad=True)
    with torch.no_grad():
        x[3] = 0  # an all-zero input row
    qat = quant.prepare_qat(m)
    y = m(x)
    w = m.weight.detach().numpy()
    xq = dequant_rows(x.detach().numpy())  # activations: the same per-row contract as weights
    want = xq @ dequant_rows(w).T + m.bias.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    assert (quant.fake_quant_rows(m.weight)[m.weight == 0] == 0).all()
    g = torch.randn_like(y)
    y.backward(g)
    # straight through: dL/dW = g^T xq (the rounding's derivative taken as 1), dL/dx = g Wq
    np.testing.assert_allclose(m.weight.grad.numpy(), g.numpy().T @ xq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), g.numpy() @ dequant_rows(w), rtol=1e-5, atol=1e-6)
    qat.remove()
    assert "forward" not in vars(m) and not hasattr(m, "_pysparse_qat")
    torch.testing.assert_close(m(x), torch.nn.functional.linear(x, m.weight, m.bias))


def test_begin_step_and_bad_arguments():
    m = torch.nn.Sequential(torch.nn.Linear(8, 8))
    qat = quant.QAT(m, begin=2, activations=False)
    x = torch.randn(3, 8)
    plain = torch.nn.functional.linear(x, m[0].weight, m[0].bias)
    torch.testing.assert_close(m(x), plain)  # not yet active
    assert qat.step() is False and not qat.active
    qat.step()
    assert qat.active
    fq = torch.nn.functional.linear(x, quant.fake_quant_rows(m[0].weight), m[0].bias)  # weights only
    torch.testing.assert_close(m(x), fq)
    with pytest.raises(ValueError, match="already"):
        quant.QAT(m)
    with pytest.raises(ValueError, match="begin"):
        quant.QAT(torch.nn.Linear(2, 2), begin=-1)
    with pytest.raises(TypeError, match="nn.Linear"):
        quant.QAT(m, modules=[torch.nn.Conv2d(1, 1, 1)])
    with pytest.raises(ValueError, match="no nn.Linear"):
        quant.QAT(torch.nn.ReLU())
    with pytest.raises(TypeError, match="qat"):
        distill.fit(torch.nn.Linear(2, 2), None, [(torch.randn(2, 2), torch.tensor([0, 1]))], 1, qat=object(),
                    progress=False)


def test_converted_int8_model_computes_the_fake_quant_forward():
    model = pruned_mlp(4)
    qat = quant.prepare_qat(model)
    x = torch.randn(6, 64)
    with torch.no_grad():
        want = model(x)
    qat.remove()
    sm = ps.convert(model, example_inputs=(x,), progress=False, **INT8_ALL)
    with torch.no_grad():
        got = sm(x)
    # the same roundings; only float32 summation order differs (which can flip a rare rounding
    # of the next layer's input by one step)
    err = float((got - want).abs().max() / want.abs().max())
    assert err < 2e-3, err
    with torch.no_grad():
        plain = float((got - model(x)).abs().max() / want.abs().max())
    assert plain > 10 * err  # the float model is farther: the fake-quant forward really quantized


def mse(out, target, labels):
    return torch.nn.functional.mse_loss(out, target)


def test_qat_steps_inside_fit_with_the_pruner_and_deploys_what_it_trained():
    """prune + quantize + distill in one loop: the pruner's masks apply under the fake quant, the
    QAT steps with the optimizer, and the int8 model convert makes is the model the loss saw."""
    torch.manual_seed(11)
    teacher = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.ReLU(), torch.nn.Linear(48, 16)).eval()
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(64 * 20, 32, generator=g)
    batches = [(xs[i:i + 64], None) for i in range(0, len(xs), 64)]
    held = torch.randn(256, 32, generator=g)
    torch.manual_seed(0)
    student = copy.deepcopy(teacher).train()
    pruner = prune.Pruner(student, sparsity=0.5, pattern="unstructured", criterion="magnitude", scope="layer",
                          schedule=prune.gradual(begin=0, end=20, every=5))
    qat = quant.prepare_qat(student, begin=20)
    before = student[0].weight.detach().clone()
    distill.fit(student, teacher, batches, epochs=2, pruner=pruner, qat=qat, loss=mse, lr=1e-3, progress=False)
    assert qat.steps_ == 2 * len(batches) and qat.active
    assert not torch.equal(student[0].weight.detach(), before)  # the STE gradients trained the weights
    student.eval()
    with torch.no_grad():
        fake = student(held)  # masks, then fake quant
    qat.remove()
    student = pruner.squash().eval()
    for lin in (student[0], student[2]):
        assert abs(float((lin.weight == 0).float().mean()) - 0.5) < 0.02
    sm = ps.convert(student, example_inputs=(held[:1],), progress=False, **INT8_ALL)
    with torch.no_grad():
        got = sm(held)
    err = float((got - fake).abs().max() / fake.abs().max())
    assert err < 2e-3, err
