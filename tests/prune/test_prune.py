"""pysparse.prune: patterns x scopes hit their targets, masks stay put, models round-trip."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pysparse as ps  # noqa: E402
from pysparse import prune  # noqa: E402
from pysparse.prune.masks import mask_of  # noqa: E402

nn = torch.nn
PATTERNS = ["unstructured", (8, 1), (4, 3), (2, 5), "2:4", "channel"]


def mlp(seed: int = 0) -> nn.Sequential:
    # Odd sizes so no block divides any shape.
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(37, 50), nn.ReLU(), nn.Linear(50, 29), nn.ReLU(), nn.Linear(29, 10))


def convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 12, 3), nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16),
        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 24), nn.ReLU(), nn.Linear(24, 10),
    )


def w2d(module: nn.Module) -> np.ndarray:
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1).numpy()


def group_size(pattern, module: nn.Module) -> int:
    """The largest group a pattern makes in this layer (the rounding unit)."""
    rows, cols = w2d(module).shape
    if pattern == "channel":
        return cols
    if isinstance(pattern, tuple):
        return pattern[0] * pattern[1]
    return 1


def target_for(pattern) -> float:
    return 0.5 if pattern == "2:4" else 0.7


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("make", [mlp, convnet])
def test_measured_sparsity_hits_target(make, pattern, scope):
    model = make()
    target = target_for(pattern)
    pruner = prune.Pruner(model, sparsity=target, pattern=pattern, scope=scope)
    report = pruner.report()
    layers = list(pruner.layers_.values())
    assert len(report) == len(layers) == sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    unit = max(group_size(pattern, m) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    # Global: one ranking, off by at most half a group; layer: half a group per layer.
    slack = unit / 2 * (1 if scope == "global" else len(layers))
    assert abs(report.sparsity - target) <= slack / total + 1e-9
    for row, m in zip(report, layers):
        measured = 1.0 - np.count_nonzero(w2d(m)) / m.weight.numel()
        assert row.sparsity == pytest.approx(measured)
        assert row.target == pytest.approx(target)
        if scope == "layer":
            assert abs(row.sparsity - target) <= group_size(pattern, m) / 2 / m.weight.numel() + 1e-9
        assert row.sparsity <= 0.99 + 1e-9


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("block", [(8, 1), (4, 3), (2, 5), (8, 4), (1, 7)])
def test_block_masks_are_whole_blocks_and_pack_as_bsr(block, scope):
    model = convnet()
    pruner = prune.Pruner(model, sparsity=0.8, pattern=block, scope=scope)
    r, c = block
    for name, mask in pruner.masks_.items():
        module = pruner.layers_[name]
        rows, cols = w2d(module).shape
        m2 = mask.reshape(rows, -1).numpy()
        kept_blocks = 0
        for i in range(0, rows, r):
            for j in range(0, cols, c):
                blk = m2[i : i + r, j : j + c]
                assert blk.all() or not blk.any(), f"{name}: block at ({i}, {j}) is partly pruned"
                kept_blocks += bool(blk.any())
        w = w2d(module)
        assert ((w != 0) <= m2).all()
        bsr = ps.BSRMatrix.from_dense(w, block=block)
        np.testing.assert_array_equal(bsr.to_dense(), w)
        assert bsr.nblocks == kept_blocks
        assert bsr.nnz == kept_blocks * r * c


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize(("nm", "sparsity"), [("2:4", 0.5), ("2:4", 0.7), ("1:2", 0.5), ("4:8", 0.5), ("2:8", 0.75)])
def test_nm_masks_pack_as_nm_matrix(nm, sparsity, scope):
    model = convnet()
    pruner = prune.Pruner(model, sparsity=sparsity, pattern=nm, scope=scope)
    assert pruner.report().sparsity == pytest.approx(sparsity, abs=1e-3)
    for module in pruner.layers_.values():
        w = w2d(module)
        packed = ps.NMMatrix.from_dense(w, nm)
        np.testing.assert_array_equal(packed.to_dense(), w)


def test_nm_ramps_towards_the_nm_mask_and_ends_valid():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.5, pattern="2:4", schedule=prune.gradual(begin=0, end=4, every=1))
    seen = []
    for _ in range(4):
        pruner.step()
        seen.append(pruner.report().sparsity)
    assert seen == sorted(seen) and seen[0] < 0.5
    assert seen[-1] == pytest.approx(0.5, abs=1e-3)
    for module in pruner.layers_.values():
        ps.NMMatrix.from_dense(w2d(module), "2:4")


def test_global_scope_respects_the_layer_cap():
    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(1e-4)  # a global threshold would empty this layer
    pruner = prune.Pruner(model, sparsity=0.6, max_layer_sparsity=0.8)
    rows = {r.name: r for r in pruner.report()}
    assert rows["2"].sparsity <= 0.8 and rows["2"].sparsity >= 0.79
    assert pruner.report().sparsity == pytest.approx(0.6, abs=1e-3)

    default = prune.Pruner(mlp(), sparsity=0.95, scope="global")
    assert all(r.sparsity <= 0.99 for r in default.report())


def test_every_layer_keeps_a_group():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    pruner = prune.Pruner(model, sparsity=0.99, pattern="channel", scope="layer")
    for module in pruner.layers_.values():
        assert np.count_nonzero(w2d(module)) > 0


def test_gradual_schedule_is_zhu_and_gupta_cubic():
    s = prune.gradual(begin=100, end=500, every=100, initial=0.1)
    final = 0.9
    assert s(0, final) == 0.0 and s(99, final) == 0.0
    assert s(100, final) == pytest.approx(0.1)
    assert s(300, final) == pytest.approx(final + (0.1 - final) * 0.5**3)
    assert s(350, final) == s(300, final)  # held between updates
    assert s(500, final) == pytest.approx(final)
    assert s(10_000, final) == pytest.approx(final)
    values = [s(t, final) for t in range(100, 501, 100)]
    assert values == sorted(values)


def test_iterative_schedule_prunes_a_share_of_survivors_per_round():
    s = prune.iterative(every=10, amount=0.5, begin=5)
    assert s(4, 0.9) == 0.0
    assert s(5, 0.9) == pytest.approx(0.5)
    assert s(14, 0.9) == pytest.approx(0.5)
    assert s(15, 0.9) == pytest.approx(0.75)
    assert s(25, 0.9) == pytest.approx(0.875)
    assert s(35, 0.9) == pytest.approx(0.9)
    assert s.rounds(0.9) == 4

    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.8, schedule=prune.iterative(every=2, amount=0.5), scope="layer")
    got = [pruner.report().sparsity]
    for _ in range(6):
        pruner.step()
        got.append(pruner.report().sparsity)
    assert got[0] == pytest.approx(0.5, abs=0.01)
    assert got[2] == pytest.approx(0.75, abs=0.01)
    assert got[-1] == pytest.approx(0.8, abs=0.01)


def test_one_shot_at_a_step():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.6, schedule=prune.one_shot(at=3))
    assert pruner.report().sparsity == 0.0
    assert not pruner.step() and not pruner.step()
    assert pruner.step()
    assert pruner.report().sparsity == pytest.approx(0.6, abs=1e-3)
    assert pruner.target_ == 0.6 and pruner.step_ == 3


def _train_steps(model, n, opt=None, seed=0, batch=16, pruner=None):
    g = torch.Generator().manual_seed(seed)
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 37, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    for _ in range(n):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if pruner is not None:
            pruner.step()
    return x


@pytest.mark.parametrize("criterion", ["taylor", "fisher"])
def test_gradient_criteria_follow_the_gradients(criterion):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 8))
    with torch.no_grad():
        model[0].weight.copy_(torch.linspace(0.5, 2.0, 160).reshape(20, 8).T)  # column j larger with j
    x = torch.randn(32, 20)
    x[:, 10:] = 0.0  # inputs 10..19 never fire: their gradients are zero
    pruner = prune.Pruner(model, sparsity=0.5, criterion=criterion)
    assert pruner.report().sparsity == 0.0  # waits for gradients
    model(x).square().sum().backward()
    assert pruner.step()
    keep = pruner.masks_["0"].numpy()
    assert not keep[:, 10:].any() and keep[:, :10].all()  # the idle inputs went
    same = nn.Sequential(nn.Linear(20, 8))
    with torch.no_grad():
        same[0].weight.copy_(torch.linspace(0.5, 2.0, 160).reshape(20, 8).T)
    by_magnitude = prune.Pruner(same, sparsity=0.5).masks_["0"].numpy()
    assert by_magnitude[:, 10:].all() and not by_magnitude[:, :10].any()  # magnitude drops the small ones


@pytest.mark.parametrize("criterion", ["taylor", "fisher"])
def test_gradient_criteria_need_a_backward_pass(criterion):
    pruner = prune.Pruner(mlp(), sparsity=0.5, criterion=criterion)
    with pytest.raises(ValueError, match="backward"):
        pruner.step()


def test_gradient_criteria_accumulate_and_reset():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.3, criterion="taylor", schedule=prune.gradual(begin=2, end=6, every=2))
    _train_steps(model, 6, pruner=pruner)
    mask = mask_of(model[0])
    assert mask.accumulated is None and mask.backward_passes == 0  # reset at the update of step 6
    assert pruner.report().sparsity == pytest.approx(0.3, abs=1e-3)


def test_callable_criterion():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.5, scope="layer", criterion=lambda m, name: -getattr(m, name).abs())
    pruner.squash()
    w = model[0].weight.detach().abs()
    kept = w[w != 0]
    fresh = mlp()[0].weight.detach().abs()
    assert kept.max() <= torch.quantile(fresh.flatten(), 0.5001)  # the largest weights were pruned


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
def test_optimizers_cannot_revive_pruned_weights(opt_name):
    model = mlp()
    params = list(model.parameters())
    opt = (
        torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
        if opt_name == "sgd_momentum"
        else torch.optim.AdamW(params, lr=0.01)
    )
    _train_steps(model, 5, opt)  # momentum / moments built up on weights that will be pruned
    pruner = prune.Pruner(model, sparsity=0.8, pattern=(4, 1))
    masks = {k: v.clone() for k, v in pruner.masks_.items()}
    x = _train_steps(model, 40, opt)  # no pruner.step(): the parametrization alone holds the zeros
    for name, module in pruner.layers_.items():
        assert (module.weight.detach()[~masks[name]] == 0).all()
    before = model(x)
    pruner.step()
    for name, module in pruner.layers_.items():
        orig = module.parametrizations.weight.original.detach()
        assert (orig[~masks[name]] == 0).all()
        assert torch.equal(pruner.masks_[name], masks[name])
    torch.testing.assert_close(model(x), before)
    pruner.squash()
    for name, module in pruner.layers_.items():
        assert (module.weight.detach()[~masks[name]] == 0).all()


def test_deepcopy_keeps_masks_independently():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.7, pattern=(2, 5))
    clone = copy.deepcopy(model)
    x = torch.randn(4, 37)
    torch.testing.assert_close(clone(x), model(x))
    _train_steps(clone, 10, torch.optim.Adam(clone.parameters(), lr=0.01))
    for name, module in pruner.layers_.items():
        twin = dict(clone.named_modules())[name]
        assert torch.equal(mask_of(twin).mask, pruner.masks_[name])
        assert (twin.weight.detach()[~pruner.masks_[name]] == 0).all()
        assert mask_of(twin).mask is not pruner.masks_[name]


def test_state_dict_round_trip():
    model = convnet(seed=1)
    prune.Pruner(model, sparsity=0.6, pattern=(4, 1))
    model(torch.randn(2, 3, 6, 6))
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = convnet(seed=2)
    target_pruner = prune.Pruner(other, sparsity=0.6, pattern=(4, 1))
    other.load_state_dict(torch.load(buf))
    other.eval()
    x = torch.randn(3, 3, 6, 6)
    torch.testing.assert_close(other(x), model(x))
    for name, mask in target_pruner.masks_.items():
        assert torch.equal(mask, mask_of(dict(model.named_modules())[name]).mask)
    assert target_pruner.report().sparsity == pytest.approx(0.6, abs=1e-2)


def test_eval_train_and_dtype_moves_keep_masks():
    model = convnet()
    pruner = prune.Pruner(model, sparsity=0.75, pattern=(8, 1))
    x = torch.randn(2, 3, 6, 6)
    model.train()
    model(x)
    model.eval()
    ref = model(x)
    model.to(torch.float64).to("cpu")
    out = model(x.double())
    torch.testing.assert_close(out, ref.double(), rtol=1e-5, atol=1e-6)
    report = pruner.report()
    assert report.sparsity == pytest.approx(0.75, abs=0.02)
    assert pruner.step() is False  # masks still found after buffers were replaced
    for name, module in pruner.layers_.items():
        assert module.weight.dtype == torch.float64
        assert (module.weight.detach()[~pruner.masks_[name]] == 0).all()


def test_report_counts_params_and_flops():
    model = convnet()
    pruner = prune.Pruner(model, sparsity=0.5, scope="layer")
    before = pruner.report()
    assert before[0].flops is None and before[-1].flops == 2 * before[-1].nonzero
    assert "after one forward pass" in str(before)
    model(torch.randn(2, 3, 6, 6))
    rep = pruner.report()
    conv = rep[0]
    assert conv.flops_dense == 2 * 12 * 3 * 3 * 3 * 4 * 4  # 4x4 output positions
    assert conv.flops == 2 * conv.nonzero * 16
    assert rep.flops == sum(r.flops for r in rep) and rep.flops < rep.flops_dense
    assert rep.params == sum(m.weight.numel() for m in pruner.layers_.values())
    text = str(rep)
    for r in rep:
        assert r.name in text
    assert "total" in text and "sparsity" in text


def test_squash_returns_a_plain_model():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.6, pattern="channel", exclude_last=True)
    x = torch.randn(3, 37)
    ref = model(x)
    out = pruner.squash()
    assert out is model
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Sequential) for m in model.modules())
    assert not any(hasattr(m, "parametrizations") for m in model.modules())
    assert sorted(model.state_dict()) == sorted(mlp().state_dict())
    torch.testing.assert_close(model(x), ref)
    assert (model[0].weight == 0).sum() > 0
    assert not model[0]._forward_hooks
    with pytest.raises(RuntimeError, match="squashed"):
        pruner.step()
    copy.deepcopy(model)


def test_overrides_and_exclusions():
    model = mlp()
    pruner = prune.Pruner(model, sparsity=0.8, overrides={"2": 0.3}, exclude_last=True, scope="global")
    assert list(pruner.layers_) == ["0", "2"]
    rows = {r.name: r for r in pruner.report()}
    assert rows["2"].sparsity == pytest.approx(0.3, abs=1e-3)
    assert rows["0"].sparsity == pytest.approx(0.8, abs=1e-3)
    assert not parametrized(model[4])
    first = prune.Pruner(mlp(), sparsity=0.5, exclude_first=True, modules=None)
    assert list(first.layers_) == ["2", "4"]
    by_module = prune.Pruner(mlp(), sparsity=0.5, modules=["4"])
    assert list(by_module.layers_) == ["4"]


def parametrized(module):
    return hasattr(module, "parametrizations")


def test_l1_regularization():
    model = mlp()
    lam = 1e-3
    reg = prune.l1_regularization(model, lam)
    expected = lam * sum(m.weight.abs().sum() for m in model if isinstance(m, nn.Linear))
    torch.testing.assert_close(reg, expected)
    reg.backward()
    torch.testing.assert_close(model[0].weight.grad, lam * model[0].weight.detach().sign())
    assert model[0].bias.grad is None
    only = prune.l1_regularization(model, lam, modules=[model[4]])
    torch.testing.assert_close(only, lam * model[4].weight.abs().sum())


def test_l2_and_magnitude_rank_groups_differently():
    def pick(criterion):
        layer = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[3.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]))
        model = nn.Sequential(layer)
        return prune.Pruner(model, sparsity=0.5, pattern=(2, 2), criterion=criterion).masks_["0"]

    # Block A = one spike (mean |w| 0.75, mean w^2 2.25), block B = flat ones (1 and 1).
    assert pick("magnitude")[:, 2:].all() and not pick("magnitude")[:, :2].any()
    assert pick("l2")[:, :2].all() and not pick("l2")[:, 2:].any()


def test_gradual_schedule_drives_the_pruner():
    model = mlp()
    schedule = prune.gradual(begin=2, end=10, every=2)
    pruner = prune.Pruner(model, sparsity=0.8, pattern=(2, 5), schedule=schedule, scope="layer")
    changes = []
    for step in range(1, 13):
        changes.append(pruner.step())
        expected = schedule(step, 0.8)
        assert pruner.target_ == pytest.approx(expected)
        assert pruner.report().sparsity == pytest.approx(expected, abs=0.01)
    assert [i + 1 for i, c in enumerate(changes) if c] == [4, 6, 8, 10]  # step 2 is the 0.0 start
