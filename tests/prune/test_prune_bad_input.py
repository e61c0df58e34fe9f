"""pysparse.prune refuses bad input with an error that says what to do."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from pysparse import prune  # noqa: E402

nn = torch.nn


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_0_1(sparsity):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.Pruner(mlp(), sparsity=sparsity)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.Pruner(mlp(), sparsity=0.5, overrides={"0": sparsity})


@pytest.mark.parametrize("sparsity", ["0.5", None, True])
def test_sparsity_not_a_number(sparsity):
    with pytest.raises(TypeError, match="number"):
        prune.Pruner(mlp(), sparsity=sparsity)


@pytest.mark.parametrize(
    ("pattern", "error", "match"),
    [
        ("diagonal", ValueError, "unknown pattern"),
        ((3, 1), ValueError, "block rows R must be one of"),
        ((8, 0), ValueError, "block columns"),
        ((16, 1), ValueError, "does not fit layer '2'"),
        ((8, 13), ValueError, "does not fit layer '0'"),
        ("3:2", ValueError, "1 <= N <= M"),
        ("2:3", ValueError, "M in"),
        ("2:16", ValueError, "M in"),
        ("a:b", ValueError, "N:M"),
        (8, TypeError, "pattern must be"),
    ],
)
def test_bad_pattern(pattern, error, match):
    model = mlp()
    with pytest.raises(error, match=match):
        prune.Pruner(model, sparsity=0.5, pattern=pattern)
    assert_untouched(model)


def assert_untouched(model):
    """A refused Pruner leaves the model exactly as it came."""
    assert not any(hasattr(m, "parametrizations") or m._forward_hooks for m in model.modules())
    fresh = mlp().state_dict()
    got = model.state_dict()
    assert sorted(got) == sorted(fresh) and all(torch.equal(got[k], fresh[k]) for k in fresh)


def test_block_that_does_not_fit_can_be_excluded():
    pruner = prune.Pruner(mlp(), sparsity=0.5, pattern=(16, 1), exclude_last=True)
    assert list(pruner.layers_) == ["0"]


def test_bad_criterion_scope_schedule():
    with pytest.raises(ValueError, match="unknown criterion 'snip'"):
        prune.Pruner(mlp(), criterion="snip")
    with pytest.raises(TypeError, match="criterion must be"):
        prune.Pruner(mlp(), criterion=3)
    with pytest.raises(ValueError, match="unknown scope"):
        prune.Pruner(mlp(), scope="model")
    with pytest.raises(TypeError, match="schedule must be"):
        prune.Pruner(mlp(), schedule=0.5)
    with pytest.raises(ValueError, match="max_layer_sparsity"):
        prune.Pruner(mlp(), max_layer_sparsity=0.0)
    with pytest.raises(ValueError, match="schedule returned"):
        prune.Pruner(mlp(), schedule=lambda step, final: 1.0)


def test_bad_criterion_output():
    model = mlp()
    with pytest.raises(ValueError, match="one score per weight"):
        prune.Pruner(model, criterion=lambda m, name: getattr(m, name).abs().sum(1))
    assert_untouched(model)
    with pytest.raises(TypeError, match="torch.Tensor"):
        prune.Pruner(mlp(), criterion=lambda m, name: 1.0)
    with pytest.raises(ValueError, match="NaN"):
        prune.Pruner(mlp(), criterion=lambda m, name: getattr(m, name) * float("nan"))


def test_no_prunable_layer():
    with pytest.raises(ValueError, match="no layer to prune"):
        prune.Pruner(nn.Sequential(nn.ReLU(), nn.Tanh()))
    with pytest.raises(ValueError, match="no layer to prune"):
        prune.Pruner(nn.Sequential(nn.Linear(3, 3)), exclude_last=True)
    with pytest.raises(ValueError, match="no layer to prune"):
        prune.Pruner(mlp(), modules=[])
    with pytest.raises(TypeError, match="nn.Module"):
        prune.Pruner([nn.Linear(3, 3)])


def test_bad_modules_and_overrides():
    model = mlp()
    with pytest.raises(TypeError, match="only Linear and Conv2d"):
        prune.Pruner(model, modules=[model[1]])
    with pytest.raises(ValueError, match="no module named"):
        prune.Pruner(model, modules=["fc9"])
    with pytest.raises(ValueError, match="not part of the model"):
        prune.Pruner(model, modules=[nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="not a pruned layer"):
        prune.Pruner(mlp(), overrides={"1": 0.5})
    with pytest.raises(TypeError, match="overrides must be a dict"):
        prune.Pruner(mlp(), overrides=[("0", 0.5)])


def test_pruning_twice_is_refused():
    model = mlp()
    prune.Pruner(model, sparsity=0.5)
    with pytest.raises(ValueError, match="already has a pysparse mask"):
        prune.Pruner(model, sparsity=0.5)


@pytest.mark.parametrize("criterion", ["taylor", "fisher"])
def test_gradient_criterion_before_backward(criterion):
    pruner = prune.Pruner(mlp(), criterion=criterion, schedule=prune.gradual(begin=0, end=10, every=5))
    for _ in range(4):
        pruner.step()  # target 0 until step 5: nothing to score yet
    with pytest.raises(ValueError, match=r"loss\.backward\(\)"):
        pruner.step()
    with pytest.raises(ValueError, match="through prune.Pruner"):
        prune.Taylor()(nn.Linear(2, 2), "weight")


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="end must be after begin"):
        prune.gradual(begin=10, end=10, every=1)
    with pytest.raises(ValueError, match="every must be >= 1"):
        prune.gradual(begin=0, end=10, every=0)
    with pytest.raises(TypeError, match="begin must be an int"):
        prune.gradual(begin=0.5, end=10, every=1)
    with pytest.raises(ValueError, match="initial"):
        prune.gradual(begin=0, end=10, every=1, initial=1.0)
    with pytest.raises(ValueError, match="amount"):
        prune.iterative(every=10, amount=0.0)
    with pytest.raises(ValueError, match="at must be >= 0"):
        prune.one_shot(at=-1)


def test_bad_l1_arguments():
    with pytest.raises(ValueError, match="lam"):
        prune.l1_regularization(mlp(), -1.0)
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        prune.l1_regularization(nn.Sequential(nn.ReLU()), 0.1)
