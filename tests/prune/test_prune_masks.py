"""The mask parametrization on its own: it records whatever statistic it is handed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils import parametrize  # noqa: E402

from pysparse.prune.masks import _Mask, mask_of, original  # noqa: E402


def test_mask_records_the_statistic_it_was_handed():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    keep = torch.tensor([[True, False, True], [False, True, True]])
    mask = _Mask(keep.clone(), "grad", lambda w, g: g)
    parametrize.register_parametrization(layer, "weight", mask, unsafe=True)
    assert mask_of(layer) is mask and original(layer, "weight") is layer.parametrizations.weight.original
    grads = []
    for _ in range(2):
        x = torch.randn(4, 3)
        layer.zero_grad()
        (layer(x) ** 2).sum().backward()
        w = layer.weight.detach()  # the masked weight: its gradient is what the hook sees
        out = x @ w.T + layer.bias.detach()
        grads.append((2 * out).T @ x)
    assert mask.backward_passes == 2
    torch.testing.assert_close(mask.accumulated, grads[0] + grads[1])
    assert torch.equal(layer.weight == 0, ~keep)
    mask.reset()
    assert mask.accumulated is None and mask.backward_passes == 0


def test_mask_without_a_statistic_records_nothing():
    layer = torch.nn.Linear(3, 2)
    mask = _Mask(torch.ones(2, 3, dtype=torch.bool))
    parametrize.register_parametrization(layer, "weight", mask, unsafe=True)
    layer(torch.randn(1, 3)).sum().backward()
    assert mask.accumulated is None and mask.backward_passes == 0
    assert mask_of(torch.nn.Linear(3, 2)) is None


@pytest.mark.parametrize("track, accumulate", [("taylor", None), (None, lambda w, g: g)])
def test_mask_takes_a_statistic_name_and_function_together(track, accumulate):
    with pytest.raises(ValueError, match="both"):
        _Mask(torch.ones(2, dtype=torch.bool), track, accumulate)
