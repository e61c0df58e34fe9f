"""pysparse.distill: the KD loss (with its T^2 factor), feature hints, and the fit loop."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
nn = torch.nn
F = torch.nn.functional

import pysparse  # noqa: E402
from pysparse import distill, prune  # noqa: E402
from pysparse.datasets import load_digits  # noqa: E402

from _one_thread import one_torch_thread  # noqa: E402, F401  (autouse: the models here are tiny)

# A float64 loss against a float64 hand computation.
F64_RTOL = 1e-10




def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


# -- KDLoss ---------------------------------------------------------------------------


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (7.5, 0.3)])
def test_kd_value_matches_hand_computed_float64(rng, temperature, alpha):
    zs, zt = rng.standard_normal((2, 9, 5)) * 3
    labels = rng.integers(0, 5, 9)
    log_ps, log_pt = np_log_softmax(zs / temperature), np_log_softmax(zt / temperature)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(1).mean()
    ce = -np_log_softmax(zs)[np.arange(9), labels].mean()
    want = alpha * temperature**2 * kl + (1 - alpha) * ce
    got = distill.KDLoss(temperature, alpha)(torch.from_numpy(zs), torch.from_numpy(zt), torch.from_numpy(labels))
    assert got.dtype == torch.float64
    assert abs(float(got) - want) <= F64_RTOL * abs(want)


def soft_grad(zs: torch.Tensor, zt: torch.Tensor, temperature: float, t_squared: bool = True) -> torch.Tensor:
    z = zs.clone().requires_grad_(True)
    kd = distill.KDLoss(temperature, alpha=1.0)
    value = kd(z, zt) if t_squared else kd(z, zt) / temperature**2
    value.backward()
    return z.grad


def test_t_squared_keeps_the_soft_gradient_scale(rng):
    """Distiller forgot the T^2: without it the soft gradient shrinks like 1/T^2."""
    zs, zt = (torch.from_numpy(a) for a in rng.standard_normal((2, 16, 10)))
    norms = {t: float(soft_grad(zs, zt, t).norm()) for t in (1.0, 2.0, 4.0, 8.0, 16.0)}
    assert max(norms.values()) / min(norms.values()) < 3.0
    # Large T: T^2 * dKL/dz_s -> (centred(z_s) - centred(z_t)) / (K * batch), independent of T.
    centred = lambda z: z - z.mean(1, keepdim=True)  # noqa: E731
    limit = (centred(zs) - centred(zt)) / (zs.shape[1] * zs.shape[0])
    assert float((soft_grad(zs, zt, 512.0) - limit).norm() / limit.norm()) < 0.01
    assert abs(norms[8.0] / norms[16.0] - 1) < 0.1
    # The check above catches a missing T^2: then T = 8 vs 1 differs by ~64x.
    unscaled = float(soft_grad(zs, zt, 8.0, t_squared=False).norm())
    assert norms[1.0] / unscaled > 30


def test_alpha_zero_is_cross_entropy_and_one_is_soft_only(rng):
    zs, zt = (torch.from_numpy(a) for a in rng.standard_normal((2, 6, 4)))
    labels = torch.from_numpy(rng.integers(0, 4, 6))
    assert torch.equal(distill.KDLoss(3.0, alpha=0.0)(zs, zt, labels), F.cross_entropy(zs, labels))
    soft = distill.KDLoss(3.0, alpha=1.0)
    assert torch.equal(soft(zs, zt), soft(zs, zt, labels))  # labels ignored
    assert torch.equal(soft(zs, zt), soft.soft(zs, zt))
    assert float(soft(zt, zt)) == pytest.approx(0.0, abs=1e-12)  # same logits: no soft loss


def test_teacher_logits_get_no_gradient(rng):
    zs, zt = (torch.from_numpy(a).requires_grad_(True) for a in rng.standard_normal((2, 5, 3)))
    distill.KDLoss(2.0, 0.5)(zs, zt, torch.zeros(5, dtype=torch.long)).backward()
    assert zs.grad is not None and float(zs.grad.abs().sum()) > 0
    assert zt.grad is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(temperature=float("inf")), ValueError, "temperature"),
        (dict(temperature=float("nan")), ValueError, "temperature"),
        (dict(alpha=-0.1), ValueError, "alpha"),
        (dict(alpha=1.5), ValueError, "alpha"),
        (dict(alpha=float("nan")), ValueError, "alpha"),
        (dict(temperature="4"), TypeError, "temperature"),
        (dict(alpha=True), TypeError, "alpha"),
    ],
)
def test_kd_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        distill.KDLoss(**kwargs)


def test_kd_bad_inputs():
    kd = distill.KDLoss()
    with pytest.raises(ValueError, match="same shape"):
        kd(torch.zeros(4, 10), torch.zeros(4, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels are needed"):
        kd(torch.zeros(4, 10), torch.zeros(4, 10))
    with pytest.raises(TypeError, match="tensors"):
        kd(np.zeros((4, 10)), torch.zeros(4, 10))
    with pytest.raises(ValueError, match="batch, classes"):
        kd(torch.zeros(10), torch.zeros(10), torch.zeros((), dtype=torch.long))


# -- FeatureDistiller -----------------------------------------------------------------


def mlp(*widths: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_feature_projection_when_widths_differ():
    torch.manual_seed(0)
    student, teacher = mlp(6, 4, 3), mlp(6, 9, 3)
    hints = distill.FeatureDistiller(student, teacher, {"0": "0"}, weight=2.0)
    proj = hints.projections[0]
    assert isinstance(proj, nn.Linear) and (proj.in_features, proj.out_features) == (4, 9)
    assert [p is proj.weight for p in hints.trainable_parameters()] == [True]
    x = torch.randn(5, 6)
    with torch.no_grad():
        teacher(x)
    student(x)
    value = hints.loss()
    want = 2.0 * F.mse_loss(proj(student[0](x)), teacher[0](x))
    torch.testing.assert_close(value, want)
    value.backward()
    assert float(proj.weight.grad.abs().sum()) > 0
    assert float(student[0].weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_feature_conv_projection_and_identity():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 1))
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 1))
    hints = distill.FeatureDistiller(student, teacher, [("1", "1"), ("2", "2")], example_input=torch.randn(1, 3, 6, 6))
    conv, same = hints.projections
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (4, 8)
    assert isinstance(same, nn.Identity)
    x = torch.randn(2, 3, 6, 6)
    teacher(x)
    student(x)
    hints.loss().backward()
    assert float(conv.weight.grad.abs().sum()) > 0


def test_feature_distiller_bad_input():
    student, teacher = mlp(6, 4, 3), mlp(6, 9, 3)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        distill.FeatureDistiller(student, teacher, {"nope": "0"})
    with pytest.raises(ValueError, match="example_input"):
        distill.FeatureDistiller(student, teacher, {"1": "1"})  # a ReLU: width unknown
    with pytest.raises(ValueError, match="empty"):
        distill.FeatureDistiller(student, teacher, {})
    hints = distill.FeatureDistiller(student, teacher, {"1": "1"}, example_input=torch.zeros(2, 6))
    with pytest.raises(RuntimeError, match="run the student and the teacher"):
        hints.loss()
    hints.remove()
    assert not student[1]._forward_hooks and not teacher[1]._forward_hooks


# -- fit ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    to = lambda xy: torch.utils.data.TensorDataset(*map(torch.from_numpy, xy))  # noqa: E731
    return to(d["train"]), to(d["test"])


def loader(ds, batch_size=64, shuffle=True):
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    model = mlp(64, 64, 10)
    history = distill.fit(model, None, loader(digits[0]), 8, val_loader=loader(digits[1], 512), progress=False, lr=3e-3)
    assert history[-1]["val_acc"] > 0.85
    return model.eval()


class HalvingPruner:
    """Counts its steps and zeroes the weights of the first quarter of the inputs each step
    (the top two rows of the 8x8 digits, mostly blank border)."""

    def __init__(self, layer: nn.Linear):
        self.layer, self.steps = layer, 0

    def step(self) -> None:
        self.steps += 1
        with torch.no_grad():
            self.layer.weight[:, : self.layer.in_features // 4] = 0.0


def test_fit_digits(digits, teacher):
    torch.manual_seed(1)
    student = mlp(64, 16, 10)
    before = copy.deepcopy(teacher.state_dict())
    teacher.train()  # fit must put it in eval mode and then restore
    pruner = HalvingPruner(student[0])
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    opt_steps = []
    optimizer.register_step_post_hook(lambda *_: opt_steps.append(1))
    train = loader(digits[0])
    history = distill.fit(student, teacher, train, 4, pruner=pruner, val_loader=loader(digits[1], 512),
                          optimizer=optimizer, progress=False)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert set(history[0]) == {"epoch", "loss", "train_acc", "val_acc", "sparsity", "steps", "time"}
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert history[-1]["val_acc"] > 0.7
    assert pruner.steps == len(opt_steps) == history[-1]["steps"] == 4 * len(train)
    # Measured, not assumed: a quarter of the first layer's 1024 weights over all 1184.
    assert history[-1]["sparsity"] == pytest.approx(256 / (64 * 16 + 16 * 10))
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert student.training


def test_fit_with_a_custom_loss(digits, teacher):
    calls = []

    def logit_matching(out, t_out, labels):  # regression on the teacher's logits
        calls.append((out.shape, t_out.shape, labels.shape))
        return F.mse_loss(out, t_out)

    torch.manual_seed(2)
    student = mlp(64, 16, 10)
    history = distill.fit(student, teacher, loader(digits[0]), 3, loss=logit_matching, lr=1e-2, progress=False)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert len(calls) == history[-1]["steps"] and calls[0][0] == calls[0][1] and calls[0][2][0] == calls[0][0][0]


def test_fit_with_feature_pairs(digits, teacher):
    torch.manual_seed(3)
    student = mlp(64, 16, 10)
    history = distill.fit(student, teacher, loader(digits[0]), 2, features={"1": "1"}, lr=1e-2, progress=True)
    assert history[-1]["loss"] < history[0]["loss"]
    assert not student[1]._forward_hooks and not teacher[1]._forward_hooks  # hooks gone afterwards


def test_fit_refuses_an_optimizer_without_the_projections(digits, teacher):
    student = mlp(64, 16, 10)
    hints = distill.FeatureDistiller(student, teacher, {"0": "0"})
    with pytest.raises(ValueError, match="projections"):
        distill.fit(student, teacher, loader(digits[0]), 1, optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
                    features=hints, progress=False)
    hints.remove()


def test_fit_bad_arguments(digits, teacher):
    student, train = mlp(64, 16, 10), loader(digits[0])
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        distill.fit(student, teacher, train, 0)
    with pytest.raises(TypeError, match="epochs must be an int"):
        distill.fit(student, teacher, train, 2.0)
    empty = torch.utils.data.TensorDataset(torch.zeros(0, 64), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        distill.fit(student, teacher, loader(empty, shuffle=False), 1)
    with pytest.raises(ValueError, match="differ in shape"):
        distill.fit(mlp(64, 16, 7), teacher, train, 1, progress=False)
    with pytest.raises(TypeError, match="step"):
        distill.fit(student, teacher, train, 1, pruner=object())
    with pytest.raises(ValueError, match="same module"):
        distill.fit(teacher, teacher, train, 1)
    with pytest.raises(TypeError, match="nn.Module"):
        distill.fit("student", teacher, train, 1)
    with pytest.raises(TypeError, match="one-shot iterator"):
        distill.fit(student, teacher, iter(train), 1)
    with pytest.raises(TypeError, match="val_loader must be a DataLoader"):
        distill.fit(student, teacher, train, 1, val_loader=torch.zeros(3))
    with pytest.raises(ValueError, match="lr"):
        distill.fit(student, teacher, train, 1, lr=0.0)
    # A failed run still unfreezes the teacher.
    assert all(p.requires_grad for p in teacher.parameters())


# -- data parallel: two processes, gloo, loopback only ------------------------------------


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_processes_gloo(tmp_path):
    """What ``torchrun --nproc_per_node=2`` sets up (RANK, WORLD_SIZE, a store), with a file
    store instead of torchrun's TCP one, which would listen on every interface."""
    worker = Path(__file__).parents[1] / "support" / "distill_ddp_worker.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(pysparse.__file__).parents[1]), env.get("PYTHONPATH")]))
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's connections on loopback
    store = f"file://{tmp_path / 'store'}"
    logs = [open(tmp_path / f"rank{r}.log", "w+") for r in (0, 1)]  # files, not pipes: no pipe can fill up
    try:
        procs = [
            subprocess.Popen([sys.executable, str(worker), str(tmp_path), store], stdout=log, stderr=subprocess.STDOUT,
                             env=dict(env, RANK=str(r), LOCAL_RANK=str(r)))
            for r, log in enumerate(logs)
        ]
        try:
            for p in procs:
                p.wait(timeout=180)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, log in zip(procs, logs):
            log.seek(0)
            assert p.returncode == 0, log.read()[-4000:]
    finally:
        for log in logs:
            log.close()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in ("student", "projection"):  # seeded differently on each rank, equal at the end
        assert r0[key].keys() == r1[key].keys() and r0[key]
        for name in r0[key]:
            assert torch.equal(r0[key][name], r1[key][name]), f"{key}.{name} differs between ranks"
    assert r0["loss"] == r1["loss"]  # the history is reduced over both ranks
    assert r0["loss"][-1] < 0.9 * r0["loss"][0]
    assert r0["batches"] == 8  # the DistributedSampler halves the 256 samples per rank
    assert r0["pruner_steps"] == r0["steps"] == 4 * 8
    assert 0 < r0["sparsity"] == r1["sparsity"]  # the pruner's zeros, rank 0's choice on both
    assert r0["warned"] and r1["warned"]  # a loader without a DistributedSampler is flagged
    for criterion in ("taylor", "fisher"):
        check_masks_come_from_averaged_scores(criterion, r0[criterion], r1[criterion])


def masks_from_scores(criterion: str, weights: dict, stats: dict) -> dict:
    """The masks a Pruner picks for the worker's student when the recorded gradient
    statistics are ``stats`` (what the worker's prune_on_local_data does, in one process)."""
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for name, w in weights.items():
            model.get_submodule(name).weight.copy_(w)
    names = {id(model.get_submodule(n)): n for n in weights}

    def scores(module, pname):
        acc = stats[names[id(module)]]
        return acc if criterion == "taylor" else module.weight.detach().square() * acc  # Fisher: w^2 * sum g^2

    return prune.Pruner(model, sparsity=0.6, criterion=scores).masks_


def check_masks_come_from_averaged_scores(criterion: str, rec0: dict, rec1: dict) -> None:
    names = sorted(rec0["masks"])
    assert names == sorted(rec1["masks"]) == sorted(rec0["local"]) == ["0", "2"]
    for n in names:
        assert torch.equal(rec0["weights"][n], rec1["weights"][n])  # DDP keeps the weights equal
        assert not torch.equal(rec0["local"][n], rec1["local"][n])  # each rank saw its own data
        assert torch.equal(rec0["masks"][n], rec1["masks"][n]), f"{criterion}: ranks chose different masks"
    mean = {n: ((rec0["local"][n].double() + rec1["local"][n].double()) / 2).float() for n in names}
    expected = masks_from_scores(criterion, rec0["weights"], mean)
    for n in names:
        assert torch.equal(rec0["masks"][n], expected[n]), f"{criterion}: masks are not those of the mean scores"
    # The check has teeth: one rank's scores alone would have chosen other masks.
    for local in (rec0["local"], rec1["local"]):
        alone = masks_from_scores(criterion, rec0["weights"], local)
        assert any(not torch.equal(alone[n], expected[n]) for n in names)


def test_fit_takes_a_list_of_batches(digits, teacher):
    x, y = digits[0].tensors
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 500, 100)]
    torch.manual_seed(4)
    history = distill.fit(mlp(64, 16, 10), teacher, batches, 3, lr=1e-2, progress=False)
    assert history[-1]["steps"] == 3 * len(batches)
    assert history[-1]["loss"] < 0.95 * history[0]["loss"]


def recorded_rates(student, teacher, batches, epochs, **kw):
    """The learning rate each optimizer step used, as the optimizer saw it."""
    opt = torch.optim.SGD(student.parameters(), lr=kw.pop("lr", 0.1))
    seen = []
    opt.register_step_pre_hook(lambda o, *_: seen.append(o.param_groups[0]["lr"]))
    distill.fit(student, teacher, batches, epochs, optimizer=opt, progress=False, **kw)
    return seen


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lr_schedules_follow_their_formula(digits, teacher, schedule):
    x, y = digits[0].tensors
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 500, 50)]  # 10 per epoch
    rates = recorded_rates(mlp(64, 16, 10), teacher, batches, 3, lr=0.2, lr_schedule=schedule, warmup=4,
                           max_steps=24)
    assert len(rates) == 24
    assert rates[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])  # warm-up: (step + 1) / warmup
    t = np.arange(20) / 20  # the remaining 20 steps decay from the full rate towards 0
    want = 0.2 * (1 - t) if schedule == "linear" else 0.2 * 0.5 * (1 + np.cos(np.pi * t))
    assert rates[4:] == pytest.approx(want.tolist())


def test_lr_schedule_from_a_callable_and_the_default(digits, teacher):
    x, y = digits[0].tensors
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 500, 100)]
    calls = []

    def halve_at_half(step, total):
        calls.append(total)
        return 1.0 if step < total // 2 else 0.5

    rates = recorded_rates(mlp(64, 16, 10), teacher, batches, 2, lr_schedule=halve_at_half)
    assert rates == pytest.approx([0.1] * 5 + [0.05] * 5) and set(calls) == {10}
    assert recorded_rates(mlp(64, 16, 10), teacher, batches, 2) == pytest.approx([0.1] * 10)  # constant


def test_lr_schedule_bad_arguments(digits, teacher):
    x, y = digits[0].tensors
    batches = [(x[:100], y[:100])]
    student = mlp(64, 16, 10)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        distill.fit(student, teacher, batches, 1, lr_schedule="step", progress=False)
    with pytest.raises(TypeError, match="lr_schedule must be one of"):
        distill.fit(student, teacher, batches, 1, lr_schedule=0.5, progress=False)
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        distill.fit(student, teacher, batches, 1, warmup=-1, progress=False)
    with pytest.raises(ValueError, match="shorter than the run"):
        distill.fit(student, teacher, batches, 3, lr_schedule="cosine", warmup=3, progress=False)
    with pytest.raises(ValueError, match="finite factor"):
        distill.fit(student, teacher, batches, 2, lr_schedule=lambda s, t: -1.0, progress=False)

    class Endless(torch.utils.data.IterableDataset):  # no len(): the run's length is unknown
        def __iter__(self):
            return iter(batches)

    with pytest.raises(ValueError, match="run's length"):
        distill.fit(student, teacher, torch.utils.data.DataLoader(Endless(), batch_size=None), 1,
                    lr_schedule="linear", progress=False)


class _Recorder(torch.nn.Module):
    """A dropout layer's input and output, every training forward."""

    def __init__(self, p):
        super().__init__()
        self.drop = torch.nn.Dropout(p)
        self.pairs = []

    def forward(self, x):
        y = self.drop(x)
        if self.training:
            self.pairs.append((x.detach().clone(), y.detach().clone()))
        return y


@pytest.mark.parametrize("keep", [True, False])
def test_dropout_off_trains_without_it_and_restores_the_rates(digits, teacher, keep):
    x, y = digits[0].tensors
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 300, 100)]
    rec = _Recorder(0.5)
    student = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), rec, torch.nn.Linear(32, 10))
    torch.manual_seed(0)
    distill.fit(student, teacher, batches, 1, lr=1e-2, progress=False, dropout=keep)
    assert len(rec.pairs) == 3
    same = [torch.equal(a, b) for a, b in rec.pairs]
    assert same == [not keep] * 3  # p = 0 passes its input through; p = 0.5 zeroes and rescales
    assert rec.drop.p == 0.5 and student.training


def test_dropout_rates_come_back_when_training_fails(digits, teacher):
    x, y = digits[0].tensors
    rec = _Recorder(0.25)
    student = torch.nn.Sequential(torch.nn.Linear(64, 10), rec)
    with pytest.raises(FloatingPointError):
        distill.fit(student, teacher, [(x[:50], y[:50])], 1, progress=False, dropout=False,
                    loss=lambda s, t, lab: torch.tensor(float("nan")))
    assert rec.drop.p == 0.25
    with pytest.raises(TypeError, match="dropout must be True or False"):
        distill.fit(student, teacher, [(x[:50], y[:50])], 1, progress=False, dropout=0.0)


def test_dropout_off_knows_every_dropout_layer_torch_has():
    from pysparse.distill.trainer import _DROPOUTS

    # torch's own dropout classes share a private base; a new one there must be listed here
    assert set(torch.nn.modules.dropout._DropoutNd.__subclasses__()) <= set(_DROPOUTS)
