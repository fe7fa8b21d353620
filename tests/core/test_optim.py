"""core.optim on tiny models (no dependency on core.models)."""

from __future__ import annotations

import contextlib
import copy
import math

import ivon
import pytest
import torch
from torch import nn

from core.config import ConfigError, TrialConfig
from core.metrics import ensemble_loss
from core.optim import (
    build_optimizer,
    is_fast_weight,
    load_optimizer_state_dict,
    optimizer_state_dict,
    predict_probs,
    train_step,
)

M, D, K, B = 2, 5, 3, 8


class TinyEnsemble(nn.Module):
    """(B, D) -> (M, B, K): a shared linear layer with BatchEnsemble-style fast weights.

    `alpha` is a bare top-level fast weight, `head.gamma` a nested one, `unused` never takes
    part in the forward pass (like a layer left out by weight sharing), `frozen` has
    requires_grad=False.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(D, K)
        self.alpha = nn.Parameter(torch.ones(M, D))
        self.head = nn.Module()
        self.head.gamma = nn.Parameter(torch.ones(M, K))
        self.unused = nn.Linear(3, 3)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)

    def forward(self, x):
        h = x.unsqueeze(0) * self.alpha.unsqueeze(1)  # (M, B, D)
        return self.body(h) * self.head.gamma.unsqueeze(1)  # (M, B, K)


def _cfg(**kw) -> TrialConfig:
    base = dict(lr=0.05, weight_decay=1e-3, epochs=2, ivon_hess_init=0.1)
    base.update(kw)
    return TrialConfig(**base)


def _data(seed=0, n=B):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    y = torch.randint(0, K, (n,), generator=g)
    return x, y


def _model(seed=0):
    torch.manual_seed(seed)
    return TinyEnsemble()


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------- construction


def test_fast_weight_names():
    assert is_fast_weight("alpha") and is_fast_weight("gamma")
    assert is_fast_weight("features.3.alpha") and is_fast_weight("head.gamma")
    assert not is_fast_weight("weight") and not is_fast_weight("alphas")
    assert not is_fast_weight("gamma_net.weight") and not is_fast_weight("bn.bias")


def test_optimizer_name_selects_that_optimizer():
    # Regression: the student study's optimizer flag was never passed on.
    model = _model()
    adam, _ = build_optimizer(model, _cfg(optimizer="adam"), num_train=100, steps_per_epoch=4)
    assert type(adam) is torch.optim.Adam

    sgd, _ = build_optimizer(model, _cfg(optimizer="sgd", momentum=0.8, nesterov=True), 100, 4)
    assert type(sgd) is torch.optim.SGD
    assert all(g["momentum"] == 0.8 and g["nesterov"] for g in sgd.param_groups)

    iv, _ = build_optimizer(
        model, _cfg(optimizer="ivon", ivon_hess_init=0.3, ivon_train_samples=2), 1234, 4
    )
    assert type(iv) is ivon.IVON
    assert all(g["ess"] == 1234 and g["hess_init"] == 0.3 for g in iv.param_groups)
    assert iv.mc_samples == 2
    iv2, _ = build_optimizer(model, _cfg(optimizer="ivon", ivon_ess=50.0), 1234, 4)
    assert all(g["ess"] == 50.0 for g in iv2.param_groups)


def test_unknown_optimizer_and_schedule_are_config_errors():
    cfg = _cfg()
    cfg.optimizer = "lamb"  # bypasses TrialConfig.validate on purpose
    with pytest.raises(ConfigError, match=r"optimizer='lamb'.*adam.*sgd.*ivon"):
        build_optimizer(_model(), cfg, 100, 4)
    cfg = _cfg()
    cfg.schedule = "step"
    with pytest.raises(ConfigError, match=r"schedule='step'.*constant.*cosine"):
        build_optimizer(_model(), cfg, 100, 4)


@pytest.mark.parametrize("name", ["adam", "sgd", "ivon"])
def test_fast_weights_get_half_lr_and_no_weight_decay(name):
    model = _model()
    decay = {"ivon_weight_decay": 5e-4} if name == "ivon" else {"weight_decay": 5e-4}
    cfg = _cfg(optimizer=name, lr=0.2, **decay)
    opt, _ = build_optimizer(model, cfg, 100, 4)
    by_name = {g["name"]: g for g in opt.param_groups}
    fast_ids = {id(model.alpha), id(model.head.gamma)}
    assert {id(p) for p in by_name["fast"]["params"]} == fast_ids
    assert by_name["fast"]["lr"] == pytest.approx(0.1)
    assert by_name["fast"]["weight_decay"] == 0.0
    slow_ids = {id(p) for p in by_name["slow"]["params"]}
    assert slow_ids == {id(p) for p in (*model.body.parameters(), *model.unused.parameters())}
    assert by_name["slow"]["lr"] == pytest.approx(0.2)
    assert by_name["slow"]["weight_decay"] == 5e-4
    # requires_grad=False parameters are left out
    assert id(model.frozen) not in fast_ids | slow_ids


def test_tied_parameter_appears_once():
    model = _model()
    model.tied = model.body  # the same Linear registered twice
    opt, _ = build_optimizer(model, _cfg(optimizer="adam"), 100, 4)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- schedules


def test_cosine_schedule_reaches_zero_at_the_end_and_constant_stays():
    model = _model()
    cfg = _cfg(optimizer="sgd", schedule="cosine", epochs=2, lr=0.4)
    opt, sched = build_optimizer(model, cfg, 100, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.4)
    assert lrs[5] == pytest.approx(0.2)  # halfway
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.0, abs=1e-12)  # fast group too

    opt, sched = build_optimizer(model, _cfg(optimizer="sgd", lr=0.4), 100, 5)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.4)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.2)


def test_train_step_steps_the_scheduler_each_step():
    model = _model()
    cfg = _cfg(optimizer="ivon", schedule="cosine", epochs=1)
    opt, sched = build_optimizer(model, cfg, 100, steps_per_epoch=4)
    x, y = _data()
    for _ in range(4):
        train_step(model, opt, x, y, cfg, sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("name", ["adam", "sgd", "ivon"])
def test_train_step_returns_loss_and_detached_logits_and_learns(name):
    model = _model()
    cfg = _cfg(optimizer=name, lr=0.05 if name != "ivon" else 0.2, weight_decay=0.0)
    opt, sched = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    x, y = _data()
    first, logits = train_step(model, opt, x, y, cfg, sched)
    assert isinstance(first, float) and math.isfinite(first)
    assert logits.shape == (M, B, K) and not logits.requires_grad
    for _ in range(40):
        loss, _ = train_step(model, opt, x, y, cfg, sched)
    assert loss < first


def test_adam_sgd_ivon_from_same_seed_give_different_weights():
    x, y = _data()
    init = _flat(_model(seed=3))
    finals = {}
    for name in ("adam", "sgd", "ivon"):
        torch.manual_seed(0)
        model = _model(seed=3)
        cfg = _cfg(optimizer=name, lr=0.05)
        opt, sched = build_optimizer(model, cfg, num_train=B, steps_per_epoch=3)
        for _ in range(3):
            train_step(model, opt, x, y, cfg, sched)
        finals[name] = _flat(model)
        assert not torch.allclose(finals[name], init), f"{name} did not change the weights"
    assert not torch.allclose(finals["adam"], finals["sgd"])
    assert not torch.allclose(finals["adam"], finals["ivon"])
    assert not torch.allclose(finals["sgd"], finals["ivon"])


def test_ivon_forward_backward_inside_sampling_and_step_outside():
    model = _model()
    cfg = _cfg(optimizer="ivon", ivon_train_samples=2, weight_decay=0.0)
    opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    mean_before = _flat(model).clone()
    events = []
    inside = {"flag": False}

    orig_sampled = opt.sampled_params

    @contextlib.contextmanager
    def spy_sampled(train=False):
        with orig_sampled(train=train):
            inside["flag"] = True
            try:
                yield
            finally:
                inside["flag"] = False
        events.append(("exit", train))

    orig_forward = model.forward

    def spy_forward(x):
        events.append(("forward", inside["flag"]))
        # the weights seen by the forward pass are a sample, not the mean
        events.append(("sampled_differs", not torch.allclose(_flat(model), mean_before)))
        return orig_forward(x)

    orig_step = opt.step

    def spy_step(*a, **k):
        events.append(("step", inside["flag"]))
        # outside the context the mean weights are back in place
        events.append(("mean_restored", torch.equal(_flat(model), mean_before)))
        return orig_step(*a, **k)

    opt.sampled_params = spy_sampled
    model.forward = spy_forward
    opt.step = spy_step
    x, y = _data()
    train_step(model, opt, x, y, cfg)
    assert events == [
        ("forward", False),  # the mean weights' pass, for the training accuracy
        ("sampled_differs", False),
        ("forward", True),
        ("sampled_differs", True),
        ("exit", True),
        ("forward", True),
        ("sampled_differs", True),
        ("exit", True),
        ("step", False),
        ("mean_restored", True),
    ]
    assert not torch.equal(_flat(model), mean_before)  # the step moved the mean


class _NormNet(nn.Module):
    """One member with a BatchNorm, whose running statistics a forward pass in training
    mode updates."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, K))

    def forward(self, x):
        return self.net(x).unsqueeze(0)  # (1, B, K)


def test_ivon_training_accuracy_is_taken_at_the_mean_weights_and_changes_no_step():
    """IVON's training loss and logits are the mean weights' in training mode (as validation
    predicts at the mean), while its update and the norm's running statistics are exactly
    those of IVON's sampled pass alone."""
    cfg = _cfg(optimizer="ivon", ensemble="single", ensemble_size=1, alpha=None, gamma=None)
    cfg = cfg.replace(weight_decay=0.0, ivon_hess_init=0.01)  # wide posterior: samples differ
    model, ref_model = _NormNet(), _NormNet()
    ref_model.load_state_dict(model.state_dict())
    opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    ref_opt, _ = build_optimizer(ref_model, cfg, num_train=B, steps_per_epoch=1)
    x, y = _data()
    with torch.no_grad():
        at_mean = copy.deepcopy(model)(x)  # training mode: batch statistics

    torch.manual_seed(1)
    loss, logits = train_step(model, opt, x, y, cfg)
    torch.testing.assert_close(logits, at_mean)
    assert loss == pytest.approx(float(ensemble_loss(at_mean, y, "single")), rel=1e-6)

    torch.manual_seed(1)  # the same weight sample: IVON's step without the mean pass
    with ref_opt.sampled_params(train=True):
        ref_opt.zero_grad(set_to_none=True)
        sampled = ref_model(x)
        ensemble_loss(sampled, y, "single").backward()
    ref_opt.step()
    assert not torch.allclose(sampled.detach(), at_mean, atol=1e-3)  # what it was before
    ref = ref_model.state_dict()
    for name, a in model.state_dict().items():
        torch.testing.assert_close(a, ref[name], rtol=0, atol=0, msg=name)


def test_ivon_step_survives_parameters_without_gradient():
    # `unused` never gets a gradient; plain ivon-opt would call None.flatten() on it.
    model = _model()
    cfg = _cfg(optimizer="ivon", weight_decay=0.0, ivon_weight_decay=0.0)
    opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    unused_before = model.unused.weight.detach().clone()
    x, y = _data()
    for _ in range(3):
        loss, _ = train_step(model, opt, x, y, cfg)
        assert math.isfinite(loss)
    # zero gradient and no weight decay: the unused layer's mean does not move
    assert torch.equal(model.unused.weight.detach(), unused_before)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_other_optimizers_survive_parameters_without_gradient(name):
    model = _model()
    cfg = _cfg(optimizer=name, weight_decay=0.0, grad_clip=1.0)
    opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    x, y = _data()
    train_step(model, opt, x, y, cfg)
    assert model.unused.weight.grad is None


def test_grad_clip_bounds_the_update_of_sgd():
    x, y = _data()
    x = x * 1000.0  # huge gradients
    steps = {}
    for clip in (None, 0.5):
        model = _model()
        before = _flat(model).clone()
        cfg = _cfg(
            optimizer="sgd",
            lr=1.0,
            momentum=0.0,
            weight_decay=0.0,
            fast_lr_mult=1.0,
            grad_clip=clip,
        )
        opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
        train_step(model, opt, x, y, cfg)
        steps[clip] = float((_flat(model) - before).norm())  # = lr * ||clipped grad||
    assert steps[None] > 10.0
    assert steps[0.5] == pytest.approx(0.5, rel=1e-4)


def test_grad_clip_for_ivon_is_applied_before_ivon_reads_the_gradient():
    x, y = _data()
    x = x * 1000.0
    seen = {}
    for clip in (None, 0.5):
        model = _model()
        cfg = _cfg(optimizer="ivon", grad_clip=clip, ivon_train_samples=1)
        opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
        orig_step = opt.step

        def spy_step(*a, _opt=opt, _orig=orig_step, _clip=clip, **k):
            seen[_clip] = float(_opt.state["avg_grad"].norm())  # what IVON will use
            return _orig(*a, **k)

        opt.step = spy_step
        train_step(model, opt, x, y, cfg)
    assert seen[None] > 10.0
    assert seen[0.5] == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize("name", ["adam", "sgd", "ivon"])
def test_non_finite_loss_is_returned_and_does_not_update(name):
    model = _model()
    cfg = _cfg(optimizer=name)
    opt, sched = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    x, y = _data()
    before = _flat(model).clone()
    loss, _ = train_step(model, opt, x * float("nan"), y, cfg, sched)
    assert math.isnan(loss)
    assert torch.equal(_flat(model), before)
    # the optimizer is still usable afterwards (IVON's collected samples were dropped)
    loss, _ = train_step(model, opt, x, y, cfg, sched)
    assert math.isfinite(loss)
    assert torch.isfinite(_flat(model)).all()


# ---------------------------------------------------------------- prediction


def test_predict_probs_shapes_mode_and_plain_optimizers():
    model = _model()
    x, _ = _data()
    cfg = _cfg(optimizer="adam")
    opt, _ = build_optimizer(model, cfg, B, 1)
    model.train()
    p = predict_probs(model, opt, x, cfg)
    assert p.shape == (M, B, K) and not p.requires_grad
    assert torch.allclose(p.sum(-1), torch.ones(M, B))
    assert model.training  # mode restored
    assert torch.allclose(p, torch.softmax(model(x), -1).detach())
    assert torch.allclose(predict_probs(model, None, x, cfg), p)


def test_ivon_predicts_at_mean_or_averages_samples():
    model = _model()
    cfg = _cfg(optimizer="ivon", ivon_hess_init=0.05, weight_decay=0.0)
    opt, _ = build_optimizer(model, cfg, num_train=B, steps_per_epoch=1)
    x, _ = _data()
    mean = _flat(model).clone()
    at_mean = predict_probs(model, opt, x, cfg)
    with torch.no_grad():
        assert torch.allclose(at_mean, torch.softmax(model(x), -1))
    torch.manual_seed(1)
    sampled = predict_probs(model, opt, x, cfg.replace(ivon_test_samples=4))
    assert sampled.shape == (M, B, K)
    assert torch.allclose(sampled.sum(-1), torch.ones(M, B), atol=1e-5)
    assert not torch.allclose(sampled, at_mean, atol=1e-4)
    assert torch.equal(_flat(model), mean)  # sampling leaves the mean in place
    # the average of 4 samples is that: reproduce it by hand from the same seed
    torch.manual_seed(1)
    manual = []
    for _ in range(4):
        with opt.sampled_params(), torch.no_grad():
            manual.append(torch.softmax(model.eval()(x), -1))
    assert torch.allclose(sampled, torch.stack(manual).mean(0), atol=1e-6)


def test_ivon_checkpoint_round_trip_continues_exactly():
    x, y = _data()
    cfg = _cfg(optimizer="ivon")
    torch.manual_seed(0)
    model = _model()
    opt, sched = build_optimizer(model, cfg, B, 10)
    for _ in range(3):
        train_step(model, opt, x, y, cfg, sched)
    ckpt = copy.deepcopy(
        {
            "model": model.state_dict(),
            "opt": optimizer_state_dict(opt),
            "sched": sched.state_dict(),
            "rng": torch.get_rng_state(),
        }
    )
    train_step(model, opt, x, y, cfg, sched)
    continued = _flat(model).clone()

    model2 = _model(seed=99)
    opt2, sched2 = build_optimizer(model2, cfg, B, 10)
    model2.load_state_dict(ckpt["model"])
    load_optimizer_state_dict(opt2, ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    torch.set_rng_state(ckpt["rng"])
    assert opt2.current_step == 3
    train_step(model2, opt2, x, y, cfg, sched2)
    assert torch.allclose(_flat(model2), continued, atol=1e-7)


def test_fast_group_holds_alpha_gamma_and_the_be_layers_member_biases():
    # uncertainty-baselines scales every variable named neither 'batch_norm' nor 'kernel'
    from core.layers import BEBatchNorm2d, BEConv2d, BELinear
    from core.models import build_model

    model = build_model("simple_cnn", 10, ensemble_size=3, ensemble="batch", norm="batch")
    opt, _ = build_optimizer(model, _cfg(optimizer="sgd", lr=0.2), 100, 4)
    by_name = {g["name"]: g for g in opt.param_groups}
    fast = {id(p) for p in by_name["fast"]["params"]}
    be = [m for m in model.modules() if isinstance(m, BEConv2d | BELinear)]
    expected = {id(m.alpha) for m in be} | {id(m.gamma) for m in be}
    expected |= {id(m.bias) for m in be if m.bias is not None}
    assert any(m.bias is not None for m in be)
    assert fast == expected
    norms = [m for m in model.modules() if isinstance(m, BEBatchNorm2d)]
    assert norms and all(id(n.bias) not in fast and id(n.weight) not in fast for n in norms)
    assert all(id(m.weight) not in fast for m in be)
    assert by_name["fast"]["lr"] == pytest.approx(0.1)


def test_ivon_defaults_are_the_authors_cifar_recipe():
    cfg = TrialConfig(optimizer="ivon")
    assert (cfg.ivon_hess_init, cfg.ivon_weight_decay, cfg.ivon_ess) == (0.5, 2e-4, None)
    opt, _ = build_optimizer(_model(), cfg, 45000, 4)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["slow"]["weight_decay"] == 2e-4 and by_name["fast"]["weight_decay"] == 0.0
    assert all(g["ess"] == 45000 and g["hess_init"] == 0.5 for g in opt.param_groups)
    assert all(g["beta2"] == 0.99999 and g["clip_radius"] == math.inf for g in opt.param_groups)
    # Adam and SGD keep weight_decay (default 0); IVON refuses it, pointing at its own field
    assert TrialConfig.from_dict({"optimizer": "sgd", "weight_decay": 5e-4}).weight_decay == 5e-4
    with pytest.raises(ConfigError, match=r"weight_decay=0.0005.*ivon_weight_decay"):
        TrialConfig.from_dict({"optimizer": "ivon", "weight_decay": 5e-4})


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_fused_steps_equal_torchs_loop_and_resume_across_memory_layouts(name):
    """Adam and SGD take torch's fused step (one kernel per parameter): the same weights as
    its default per-tensor loop to float rounding; a state saved with channels_last
    parameters loads into contiguous ones (the fused step reads state as flat arrays)."""
    cfg = _cfg(optimizer=name, momentum=0.9, nesterov=True)
    conv = nn.Conv2d(3, 4, 3)
    twin = copy.deepcopy(conv)
    fused, _ = build_optimizer(conv, cfg, num_train=100, steps_per_epoch=4)
    assert all(g["fused"] for g in fused.param_groups)
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adam":
        loop = torch.optim.Adam(twin.parameters(), foreach=False, **kw)
    else:
        loop = torch.optim.SGD(twin.parameters(), momentum=0.9, nesterov=True, foreach=False, **kw)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))

    def step_alike(pairs, steps=1):
        for _ in range(steps):
            for module, opt in pairs:
                opt.zero_grad()
                module(x).square().sum().backward()
                opt.step()
        (a, _), (b, _) = pairs
        torch.testing.assert_close(_flat(a), _flat(b), rtol=1e-5, atol=1e-6)

    step_alike([(conv, fused), (twin, loop)], steps=3)

    # channels_last weights and state -> a contiguous copy continues as the original does
    nhwc = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    opt_nhwc, _ = build_optimizer(nhwc, cfg, 100, 4)
    # deep copies: as from a checkpoint file (a loaded state shares the saved tensors)
    load_optimizer_state_dict(opt_nhwc, copy.deepcopy(optimizer_state_dict(fused)))
    state = opt_nhwc.state[nhwc.weight]
    assert state and all(
        v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()
        for v in state.values()
        if v.dim() == 4
    )
    saved = copy.deepcopy(optimizer_state_dict(opt_nhwc))
    resumed = copy.deepcopy(conv)
    opt_resumed, _ = build_optimizer(resumed, cfg, 100, 4)
    load_optimizer_state_dict(opt_resumed, saved)
    step_alike([(conv, fused), (resumed, opt_resumed)])
