"""core.sharing: regimes, exact parameter counts, tied Parameter objects, untiled shared input."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.config import SHARING, ConfigError
from core.models import ARCHITECTURES, ArchSpec, Classifier, Conv, build_model, count_parameters
from core.sharing import valid_sharing_regimes, validate_sharing

ROOT = Path(__file__).resolve().parents[2]

# The tables written out by hand: (in, out, region, tie label) per 3x3 conv, classifier input.
HAND_TABLES = {
    "simple_cnn": (
        [(3, 16, "early", None), (16, 16, "early", "e"), (16, 16, "early", "e"),
         (16, 32, "deep", None), (32, 32, "deep", "d"), (32, 32, "deep", "d")],
        32,
    ),
    "vgg11": (
        [(3, 64, "early", None), (64, 128, "early", None), (128, 256, "early", None),
         (256, 256, "early", "e"), (256, 256, "early", "e"),
         (256, 512, "deep", None), (512, 512, "deep", "d"), (512, 512, "deep", "d"),
         (512, 512, "deep", "d")],
        512,
    ),
}
REGIONS = {"none": set(), "early": {"early"}, "deep": {"deep"}, "all": {"early", "deep"}}


def expected_count(arch, ensemble, m, k, sharing_network, sharing_ensemble, norm="batch"):
    """Distinct parameters by formula: conv weights 9*in*out (M copies in an unshared deep
    layer; once per tie group when tied), BatchEnsemble fast weights M*(in+out), norm affine
    2*C (per member when unshared), or conv bias when there is no norm; the classifier."""
    convs, feat = HAND_TABLES[arch]
    total, seen = 0, set()
    for cin, cout, region, tie in convs:
        shared = ensemble == "single" or region in REGIONS[sharing_ensemble]
        per_member = 1 if shared else m
        tied = tie is not None and region in REGIONS[sharing_network]
        if not (tied and tie in seen):
            total += 9 * cin * cout * (per_member if ensemble == "deep" else 1)
        if tied:
            seen.add(tie)
        if ensemble == "batch" and not shared:
            total += m * (cin + cout)  # alpha, gamma
        total += (2 if norm != "none" else 1) * cout * per_member  # norm affine or conv bias
    shared = ensemble == "single" or "deep" in REGIONS[sharing_ensemble]
    if shared:
        total += feat * k + k
    elif ensemble == "batch":
        total += feat * k + m * feat + m * k + m * k  # W, alpha, gamma, bias
    else:
        total += m * (feat * k + k)
    return total


def test_hand_formula_matches_known_numbers():
    # VGG11-BN for CIFAR-10 with conv biases has 9,231,114 parameters (the well-known count);
    # ours drops the 2,752 conv biases (BatchNorm follows) and adds conv4b (256->256 + BN).
    assert expected_count("vgg11", "single", 1, 10, "none", "none") == (
        9_231_114 - 2_752 + 9 * 256 * 256 + 2 * 256
    )
    # simple_cnn batch ensemble, 4 members, 10 classes, worked by hand:
    # conv W 28,080 + alpha/gamma 4*259 + BN 8*144 + classifier 320+128+80
    assert expected_count("simple_cnn", "batch", 4, 10, "none", "none") == 30_796


def _meta_model(*args, **kwargs):
    with torch.device("meta"):
        return build_model(*args, **kwargs)


@pytest.mark.parametrize("arch", ["simple_cnn", "vgg11"])
@pytest.mark.parametrize("ensemble", ["single", "batch", "deep"])
def test_exact_parameter_count_of_every_regime(arch, ensemble):
    m = 1 if ensemble == "single" else 4
    regimes = valid_sharing_regimes(arch, ensemble)
    if ensemble == "single":
        assert regimes == [(sn, "none") for sn in SHARING]
    else:
        assert regimes == [(sn, se) for sn in SHARING for se in SHARING]
    counts = {}
    for sn, se in regimes:
        model = _meta_model(arch, 10, m, ensemble, sharing_network=sn, sharing_ensemble=se)
        counts[sn, se] = count_parameters(model)
        assert counts[sn, se] == expected_count(arch, ensemble, m, 10, sn, se), (sn, se)
    for sn, se in regimes:  # each knob, when on, saves parameters
        if sn != "none":
            assert counts[sn, se] < counts["none", se]
        if se != "none":
            assert counts[sn, se] < counts[sn, "none"]


@pytest.mark.parametrize("norm", ["none", "member"])
@pytest.mark.parametrize("arch", ["simple_cnn", "vgg11"])
def test_parameter_count_other_norms(arch, norm):
    for sn, se in [("none", "none"), ("all", "early"), ("early", "deep")]:
        model = _meta_model(arch, 100, 3, "batch", sharing_network=sn, sharing_ensemble=se,
                            norm=norm)
        assert count_parameters(model) == expected_count(arch, "batch", 3, 100, sn, se, norm)
    if norm == "none":
        model = _meta_model(arch, 10, 2, "deep", norm=norm)
        assert count_parameters(model) == expected_count(arch, "deep", 2, 10, "none", "none",
                                                         norm)


TIES = {"simple_cnn": {"early": [("conv2", "conv3")], "deep": [("conv5", "conv6")]},
        "vgg11": {"early": [("conv4", "conv4b")], "deep": [("conv6", "conv7", "conv8")]}}


@pytest.mark.parametrize("ensemble,m", [("single", 1), ("batch", 2), ("deep", 2)])
@pytest.mark.parametrize("sharing_network", SHARING)
def test_tied_layers_share_the_parameter_object(ensemble, m, sharing_network):
    arch = "simple_cnn"
    model = build_model(arch, 5, m, ensemble, sharing_network=sharing_network,
                        sharing_ensemble="early" if ensemble != "single" else "none")
    blocks = model.blocks
    for region, groups in TIES[arch].items():
        for group in groups:
            first = blocks[group[0]].conv
            for name in group[1:]:
                other = blocks[name].conv
                tied = region in REGIONS[sharing_network]
                assert (other.weight is first.weight) == tied
                assert blocks[name].norm is not blocks[group[0]].norm
                if isinstance(getattr(other, "alpha", None), torch.nn.Parameter):
                    assert other.alpha is not first.alpha and other.gamma is not first.gamma
    # ties survive dtype/device moves, and the model still runs
    model = model.to(torch.float64)
    if "early" in REGIONS[sharing_network]:
        assert blocks["conv3"].conv.weight is blocks["conv2"].conv.weight
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).shape == (m, 2, 5)


def test_vgg11_tie_groups():
    model = _meta_model("vgg11", 10, 2, "batch", sharing_network="all")
    w = {name: block.conv.weight for name, block in model.blocks.items() if name != "fc"}
    assert w["conv4"] is w["conv4b"]
    assert w["conv6"] is w["conv7"] is w["conv8"]
    assert len({id(p) for p in w.values()}) == 9 - 1 - 2  # 9 convs; conv4b, conv7, conv8 tied
    assert model.tie_groups == [("conv4", "conv4b"), ("conv6", "conv7", "conv8")]


class _Rows:
    """Forward hooks recording each block's input shape."""

    def __init__(self, model):
        self.shapes = {}
        for name, block in model.blocks.items():
            block.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, args, output):
            self.shapes[name] = tuple(args[0].shape)
        return hook


@pytest.mark.parametrize("ensemble", ["batch", "deep"])
def test_early_shared_region_runs_once_on_the_untiled_batch(ensemble):
    m, b = 4, 3
    model = build_model("simple_cnn", 5, m, ensemble, sharing_ensemble="early")
    rows = _Rows(model)
    y = model(torch.randn(b, 3, 8, 8))
    assert y.shape == (m, b, 5)
    for name in ("conv1", "conv2", "conv3"):  # early region: one ordinary layer, B rows
        assert rows.shapes[name][0] == b
        assert type(model.blocks[name].conv) is torch.nn.Conv2d
    if ensemble == "batch":  # then tiled member-major
        assert rows.shapes["conv4"][:2] == (m * b, 16)
    else:  # then tiled channel-stacked
        assert rows.shapes["conv4"][:2] == (b, m * 16)
    assert rows.shapes["fc"][0] == m * b
    assert not torch.allclose(y[0], y[1])


def test_deep_shared_region_runs_on_all_member_rows():
    m, b = 3, 2
    model = build_model("simple_cnn", 5, m, "batch", sharing_ensemble="deep")
    rows = _Rows(model)
    y = model(torch.randn(b, 3, 8, 8))
    assert rows.shapes["conv1"][0] == m * b and rows.shapes["conv4"][0] == m * b
    assert type(model.blocks["conv4"].conv) is torch.nn.Conv2d
    assert type(model.blocks["fc"].linear) is torch.nn.Linear
    assert not torch.allclose(y[0], y[1])


@pytest.mark.parametrize("ensemble", ["batch", "deep"])
def test_all_shared_members_are_identical(ensemble):
    m, b = 3, 2
    model = build_model("simple_cnn", 5, m, ensemble, sharing_ensemble="all")
    rows = _Rows(model)
    y = model(torch.randn(b, 3, 8, 8))
    assert y.shape == (m, b, 5)
    assert all(shape[0] == b for shape in rows.shapes.values())  # computed once
    torch.testing.assert_close(y[0], y[1])
    torch.testing.assert_close(y[0], y[2])
    single = build_model("simple_cnn", 5, 1, "single")
    assert count_parameters(model) == count_parameters(single)


# ----------------------------------------------------------------------------------------------
# invalid regimes
# ----------------------------------------------------------------------------------------------
def test_single_rejects_ensemble_sharing():
    with pytest.raises(ConfigError, match=r"sharing_ensemble='early': a 'single' network"):
        validate_sharing("vgg11", "single", "none", "early")
    with pytest.raises(ConfigError, match=r"sharing_ensemble='all': a 'single' network"):
        build_model("simple_cnn", 10, 1, "single", sharing_ensemble="all")


@pytest.mark.parametrize("args,match", [
    (("vgg16", "batch", "none", "none"), r"arch='vgg16' is not allowed"),
    (("vgg11", "bagging", "none", "none"), r"ensemble='bagging' is not allowed"),
    (("vgg11", "batch", "middle", "none"), r"sharing_network='middle' is not allowed; "
                                           r"choose one of \['none', 'early', 'deep', 'all'\]"),
    (("vgg11", "batch", "none", "late"), r"sharing_ensemble='late' is not allowed"),
])
def test_validate_sharing_rejects_unknown_values(args, match):
    with pytest.raises(ConfigError, match=match):
        validate_sharing(*args)


@pytest.fixture
def toy_arch(monkeypatch):
    """An extra architecture, added as one registry entry: no tie pair in its deep region,
    and one with no deep region at all."""
    spec = ArchSpec("toy", "toy net", (
        Conv("c1", 3, 8, "early"), Conv("c2", 8, 8, "early", tie="t"),
        Conv("c3", 8, 8, "early", tie="t", pool=True), Conv("c4", 8, 16, "deep"),
        Classifier("fc", 16),
    ))
    flat = dataclasses.replace(spec, name="flat", layers=(
        Conv("c1", 3, 8, "early"), Conv("c2", 8, 8, "early", tie="t"),
        Conv("c3", 8, 8, "early", tie="t"), Classifier("fc", 8, region="early"),
    ))
    monkeypatch.setitem(ARCHITECTURES, "toy", spec)
    monkeypatch.setitem(ARCHITECTURES, "flat", flat)


def test_regime_that_changes_nothing_is_an_error(toy_arch):
    assert build_model("toy", 3, 2)(torch.randn(2, 3, 4, 4)).shape == (2, 2, 3)
    for sn in ("deep", "all"):
        with pytest.raises(ConfigError, match=rf"sharing_network='{sn}': toy has no same-shape "
                                              r"layers to tie in its 'deep' region.*change "
                                              r"nothing; allowed: \['none', 'early'\]"):
            validate_sharing("toy", "batch", sn, "none")
        with pytest.raises(ConfigError, match=rf"sharing_network='{sn}'"):
            build_model("toy", 3, 2, sharing_network=sn)
    for se in ("deep", "all"):
        with pytest.raises(ConfigError, match=rf"sharing_ensemble='{se}': flat has no layers in "
                                              r"its 'deep' region"):
            validate_sharing("flat", "deep", "none", se)
    assert valid_sharing_regimes("toy", "batch") == [
        (sn, se) for sn in ("none", "early") for se in SHARING
    ]


def test_flat_arch_regimes(toy_arch):
    # flat has ties only in the early region and no deep layers: 'all' ties would equal
    # 'early' (error), and ensemble sharing 'deep'/'all' would change nothing (error).
    assert valid_sharing_regimes("flat", "batch") == [
        ("none", "none"), ("none", "early"), ("early", "none"), ("early", "early"),
    ]


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------
def _count_rows(text):
    """The count table: rows after the 'rows: sharing_network, ...' line, by first word."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rows: sharing_network"))
    header = lines[start + 1].split()
    assert header == list(SHARING)
    return {line.split()[0]: line for line in lines[start + 2:] if line.strip()}


def test_cli_prints_table_and_counts():
    out = subprocess.run(
        [sys.executable, "-m", "core.sharing", "simple_cnn"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc"):
        assert name in text
    assert "early: conv2, conv3" in text and "deep: conv5, conv6" in text
    for sn, se in valid_sharing_regimes("simple_cnn", "batch"):
        assert f"{expected_count('simple_cnn', 'batch', 4, 10, sn, se):,}" in text
    row = _count_rows(text)["early"]
    assert row.split()[1:] == [
        f"{expected_count('simple_cnn', 'batch', 4, 10, 'early', se):,}" for se in SHARING
    ]


def test_cli_options_and_errors(capsys):
    from core.sharing import main

    assert main(["vgg11", "--ensemble", "single", "--num-classes", "100"]) == 0
    row = _count_rows(capsys.readouterr().out)["none"]
    assert row.split()[1:] == [f"{expected_count('vgg11', 'single', 1, 100, 'none', 'none'):,}",
                               "-", "-", "-"]
    assert main(["simple_cnn", "--ensemble", "deep", "--ensemble-size", "3"]) == 0
    row = _count_rows(capsys.readouterr().out)["deep"]
    assert row.split()[1:] == [
        f"{expected_count('simple_cnn', 'deep', 3, 10, 'deep', se):,}" for se in SHARING
    ]
    assert main(["simple_cnn", "--ensemble", "batch", "--ensemble-size", "1"]) == 2
    assert "ensemble_size=1: ensemble 'batch' needs at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
