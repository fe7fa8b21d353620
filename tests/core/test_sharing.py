"""core.sharing: regimes, exact parameter counts, tied Parameter objects, untiled shared input."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.architectures import ARCHITECTURES, ArchSpec, Classifier, Conv
from core.config import SHARING, ConfigError, TrialConfig, valid_sharing_regimes
from core.cost import config_flops_per_image
from core.models import build_model, count_parameters
from core.spec import ModelSpec, check_model

ROOT = Path(__file__).resolve().parents[2]


def validate_sharing(arch, ensemble, sharing_network, sharing_ensemble):
    """The sharing rules alone: check_model with a member count that fits `ensemble`."""
    size = 1 if ensemble == "single" else 2
    check_model(
        ModelSpec(
            arch=arch,
            ensemble=ensemble,
            ensemble_size=size,
            alpha=None,
            gamma=None,
            sharing_network=sharing_network,
            sharing_ensemble=sharing_ensemble,
        )
    )


# The tables written out by hand: (in, out, region, tie label) per 3x3 conv, classifier input.
HAND_TABLES = {
    "simple_cnn": (
        [
            (3, 16, "early", None),
            (16, 16, "early", "e"),
            (16, 16, "early", "e"),
            (16, 32, "deep", None),
            (32, 32, "deep", "d"),
            (32, 32, "deep", "d"),
        ],
        32,
    ),
    "vgg11": (
        [
            (3, 64, "early", None),
            (64, 128, "early", None),
            (128, 256, "early", None),
            (256, 256, "early", None),
            (256, 512, "deep", None),
            (512, 512, "deep", "d"),
            (512, 512, "deep", "d"),
            (512, 512, "deep", "d"),
        ],
        512,
    ),
    "vgg11_share": (
        [
            (3, 64, "early", None),
            (64, 128, "early", None),
            (128, 256, "early", None),
            (256, 256, "early", "e"),
            (256, 256, "early", "e"),
            (256, 512, "deep", None),
            (512, 512, "deep", "d"),
            (512, 512, "deep", "d"),
            (512, 512, "deep", "d"),
        ],
        512,
    ),
}
ARCHS = list(HAND_TABLES)
# sharing_network values that change something: vgg11 has no same-shape pair in its early
# region (conv1-conv4: 3->64, 64->128, 128->256, 256->256), so early/all are refused for it.
NETWORK = {"simple_cnn": SHARING, "vgg11": ("none", "deep"), "vgg11_share": SHARING}
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
    # CIFAR-10 VGG11-BN with conv biases and one linear classifier 512->10 (e.g. kuangliu's
    # pytorch-cifar) has 9,231,114 parameters: conv weights 9,217,728 + conv biases 2,752 +
    # BN affine 5,504 + linear 5,130. Ours drops the conv biases (BatchNorm follows each conv):
    # 9,228,362. (The often-quoted 9,756,426 is the variant with a 512-512-512-10 MLP head,
    # i.e. two more 512x512 linear layers, 2 * 262,656; our classifier is one linear layer.)
    vgg11 = expected_count("vgg11", "single", 1, 10, "none", "none")
    assert vgg11 == 9_231_114 - 2_752 == 9_228_362
    assert 9_756_426 - 9_231_114 == 2 * (512 * 512 + 512)
    # vgg11_share adds conv4b (256->256 conv + BatchNorm)
    assert expected_count("vgg11_share", "single", 1, 10, "none", "none") == (
        vgg11 + 9 * 256 * 256 + 2 * 256
    )
    assert count_parameters(_meta_model("vgg11", 10, 1, "single")) == 9_228_362
    # simple_cnn batch ensemble, 4 members, 10 classes, worked by hand:
    # conv W 28,080 + alpha/gamma 4*259 + BN 8*144 + classifier 320+128+80
    assert expected_count("simple_cnn", "batch", 4, 10, "none", "none") == 30_796


def _meta_model(arch, num_classes, ensemble_size, ensemble, **kwargs):
    with torch.device("meta"):
        return build_model(
            arch, num_classes, ensemble_size=ensemble_size, ensemble=ensemble, **kwargs
        )


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("ensemble", ["single", "batch", "deep"])
def test_exact_parameter_count_of_every_regime(arch, ensemble):
    m = 1 if ensemble == "single" else 4
    regimes = valid_sharing_regimes(arch, ensemble)
    if ensemble == "single":
        assert regimes == [(sn, "none") for sn in NETWORK[arch]]
    else:
        assert regimes == [(sn, se) for sn in NETWORK[arch] for se in SHARING]
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


# The exact numbers `python -m core.sharing vgg11` prints (batch, M=4, 10 classes), worked out:
# single 9,228,362 + fast weights 4 * 4,995 (sum of conv in+out) + 3 more copies of the BN
# affine 3 * 5,504 + classifier alpha 4*512, gamma 4*10 and 3 more bias copies 3*10 = 9,266,972;
# tying conv7 and conv8 to conv6 saves 2 * 9*512*512 = 4,718,592.
VGG11_BATCH = {
    ("none", "none"): 9_266_972,
    ("none", "early"): 9_258_128,
    ("none", "deep"): 9_237_206,
    ("none", "all"): 9_228_362,
    ("deep", "none"): 4_548_380,
    ("deep", "early"): 4_539_536,
    ("deep", "deep"): 4_518_614,
    ("deep", "all"): 4_509_770,
}


def test_vgg11_batch_counts_written_out():
    assert valid_sharing_regimes("vgg11", "batch") == list(VGG11_BATCH)
    for (sn, se), n in VGG11_BATCH.items():
        assert expected_count("vgg11", "batch", 4, 10, sn, se) == n
    assert VGG11_BATCH["none", "none"] == 9_228_362 + 4 * 4_995 + 3 * 5_504 + 4 * 522 + 3 * 10
    assert VGG11_BATCH["none", "none"] - VGG11_BATCH["deep", "none"] == 2 * 9 * 512 * 512
    assert VGG11_BATCH["none", "all"] == expected_count("vgg11", "single", 1, 10, "none", "none")


@pytest.mark.parametrize("norm", ["none", "member"])
@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_other_norms(arch, norm):
    for sn, se in [("none", "none"), ("all", "early"), ("early", "deep"), ("deep", "all")]:
        if sn not in NETWORK[arch]:
            continue
        model = _meta_model(
            arch, 100, 3, "batch", sharing_network=sn, sharing_ensemble=se, norm=norm
        )
        assert count_parameters(model) == expected_count(arch, "batch", 3, 100, sn, se, norm)
    if norm == "none":
        model = _meta_model(arch, 10, 2, "deep", norm=norm)
        assert count_parameters(model) == expected_count(arch, "deep", 2, 10, "none", "none", norm)


TIES = {
    "simple_cnn": {"early": [("conv2", "conv3")], "deep": [("conv5", "conv6")]},
    "vgg11": {"deep": [("conv6", "conv7", "conv8")]},
    "vgg11_share": {"early": [("conv4", "conv4b")], "deep": [("conv6", "conv7", "conv8")]},
}


@pytest.mark.parametrize("arch", ARCHS)
def test_tie_table_is_as_documented(arch):
    """TIES (the groups written out in this file) is exactly what the table ties."""
    for sn in NETWORK[arch]:
        groups = [
            g
            for region in ("early", "deep")
            if region in REGIONS[sn]
            for g in TIES[arch].get(region, [])
        ]
        assert _meta_model(arch, 10, 2, "batch", sharing_network=sn).tie_groups == groups


@pytest.mark.parametrize("ensemble,m", [("single", 1), ("batch", 2), ("deep", 2)])
@pytest.mark.parametrize("sharing_network", SHARING)
def test_tied_layers_share_the_parameter_object(ensemble, m, sharing_network):
    arch = "simple_cnn"
    model = build_model(
        arch,
        5,
        ensemble_size=m,
        ensemble=ensemble,
        sharing_network=sharing_network,
        sharing_ensemble="early" if ensemble != "single" else "none",
    )
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


def _conv_weights(model):
    return {name: block.conv.weight for name, block in model.blocks.items() if name != "fc"}


def test_vgg11_tie_groups():
    model = _meta_model("vgg11", 10, 2, "batch", sharing_network="deep")
    w = _conv_weights(model)
    assert w["conv6"] is w["conv7"] is w["conv8"]
    assert len({id(p) for p in w.values()}) == 8 - 2  # 8 convs; conv7, conv8 tied to conv6
    assert model.tie_groups == [("conv6", "conv7", "conv8")]

    model = _meta_model("vgg11_share", 10, 2, "batch", sharing_network="all")
    w = _conv_weights(model)
    assert w["conv4"] is w["conv4b"]
    assert w["conv6"] is w["conv7"] is w["conv8"]
    assert len({id(p) for p in w.values()}) == 9 - 1 - 2  # 9 convs; conv4b, conv7, conv8 tied
    assert model.tie_groups == [("conv4", "conv4b"), ("conv6", "conv7", "conv8")]


@pytest.mark.parametrize("sharing_network", ["early", "all"])
@pytest.mark.parametrize("ensemble,m", [("single", 1), ("batch", 4), ("deep", 4)])
def test_vgg11_refuses_early_network_sharing(sharing_network, ensemble, m):
    match = (
        rf"sharing_network='{sharing_network}': vgg11 has no same-shape layers to tie in "
        r"its 'early' region, so this would change nothing; allowed: \['none', 'deep'\]; "
        r"or use arch='vgg11_share'"
    )
    with pytest.raises(ConfigError, match=match):
        validate_sharing("vgg11", ensemble, sharing_network, "none")
    with pytest.raises(ConfigError, match=match):
        build_model(
            "vgg11", 10, ensemble_size=m, ensemble=ensemble, sharing_network=sharing_network
        )
    with pytest.raises(ConfigError, match=match):
        TrialConfig.from_dict(
            {
                "arch": "vgg11",
                "ensemble": ensemble,
                "ensemble_size": m,
                "sharing_network": sharing_network,
            }
        )
    # the suggested variant takes it
    TrialConfig.from_dict(
        {
            "arch": "vgg11_share",
            "ensemble": ensemble,
            "ensemble_size": m,
            "sharing_network": sharing_network,
        }
    )


def test_tie_variants_give_every_region_a_tie_group():
    for spec in ARCHITECTURES.values():
        if spec.tie_variant is None:
            continue
        assert spec.tie_variant in ARCHITECTURES and spec.tie_variant != spec.name
        assert {sn for sn, _ in valid_sharing_regimes(spec.tie_variant, "batch")} == set(SHARING)
    assert ARCHITECTURES["vgg11"].tie_variant == "vgg11_share"
    # vgg11_share is vgg11 plus conv4b, which takes over conv4's pool
    base, share = ARCHITECTURES["vgg11"].layers, ARCHITECTURES["vgg11_share"].layers
    assert [lay.name for lay in share] == [
        *(lay.name for lay in base[:4]),
        "conv4b",
        *(lay.name for lay in base[4:]),
    ]
    assert [lay.shape for lay in share if lay.name != "conv4b"] == [lay.shape for lay in base]
    assert share[4].shape == base[3].shape and share[4].pool and not share[3].pool


class _Rows:
    """Forward hooks recording each block's input shape."""

    def __init__(self, model):
        self.shapes, self.out_shapes = {}, {}
        for name, block in model.blocks.items():
            block.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, args, output):
            self.shapes[name] = tuple(args[0].shape)
            self.out_shapes[name] = tuple(output.shape)

        return hook


@pytest.mark.parametrize("ensemble", ["batch", "deep"])
def test_early_shared_region_runs_once_on_the_untiled_batch(ensemble):
    m, b = 4, 3
    model = build_model(
        "simple_cnn", 5, ensemble_size=m, ensemble=ensemble, sharing_ensemble="early"
    )
    rows = _Rows(model)
    y = model(torch.randn(b, 3, 8, 8))
    assert y.shape == (m, b, 5)
    for name in ("conv1", "conv2", "conv3"):  # early region: one ordinary layer, B rows
        assert rows.shapes[name][0] == b
        assert type(model.blocks[name].conv) is torch.nn.Conv2d
    if ensemble == "batch":  # the first BatchEnsemble block tiles in its convolution
        assert rows.shapes["conv4"][:2] == (b, 16)
        assert rows.out_shapes["conv4"][:2] == (m * b, 32)  # member-major from there on
        assert rows.shapes["conv5"][:2] == (m * b, 32)
    else:  # then tiled channel-stacked
        assert rows.shapes["conv4"][:2] == (b, m * 16)
    assert rows.shapes["fc"][0] == m * b
    assert not torch.allclose(y[0], y[1])


def test_deep_shared_region_runs_on_all_member_rows():
    m, b = 3, 2
    model = build_model("simple_cnn", 5, ensemble_size=m, ensemble="batch", sharing_ensemble="deep")
    rows = _Rows(model)
    y = model(torch.randn(b, 3, 8, 8))
    # conv1, the first BatchEnsemble block, takes the B images and tiles in its convolution
    assert rows.shapes["conv1"][0] == b and rows.out_shapes["conv1"][0] == m * b
    assert rows.shapes["conv4"][0] == m * b
    assert type(model.blocks["conv4"].conv) is torch.nn.Conv2d
    assert type(model.blocks["fc"].linear) is torch.nn.Linear
    assert not torch.allclose(y[0], y[1])


@pytest.mark.parametrize("ensemble", ["batch", "deep"])
def test_all_shared_members_are_identical(ensemble):
    m, b = 3, 2
    model = build_model("simple_cnn", 5, ensemble_size=m, ensemble=ensemble, sharing_ensemble="all")
    rows = _Rows(model)
    y = model(torch.randn(b, 3, 8, 8))
    assert y.shape == (m, b, 5)
    assert all(shape[0] == b for shape in rows.shapes.values())  # computed once
    torch.testing.assert_close(y[0], y[1])
    torch.testing.assert_close(y[0], y[2])
    single = build_model("simple_cnn", 5, ensemble_size=1, ensemble="single")
    assert count_parameters(model) == count_parameters(single)


# ----------------------------------------------------------------------------------------------
# invalid regimes
# ----------------------------------------------------------------------------------------------
def test_single_rejects_ensemble_sharing():
    with pytest.raises(ConfigError, match=r"sharing_ensemble='early': a 'single' network"):
        validate_sharing("vgg11", "single", "none", "early")
    with pytest.raises(ConfigError, match=r"sharing_ensemble='all': a 'single' network"):
        build_model("simple_cnn", 10, ensemble_size=1, ensemble="single", sharing_ensemble="all")


@pytest.mark.parametrize(
    "args,match",
    [
        (("vgg16", "batch", "none", "none"), r"arch='vgg16' is not allowed"),
        (("vgg11", "bagging", "none", "none"), r"ensemble='bagging' is not allowed"),
        (
            ("vgg11", "batch", "middle", "none"),
            r"sharing_network='middle' is not allowed; "
            r"choose one of \['none', 'early', 'deep', 'all'\]",
        ),
        (("vgg11", "batch", "none", "late"), r"sharing_ensemble='late' is not allowed"),
    ],
)
def test_validate_sharing_rejects_unknown_values(args, match):
    with pytest.raises(ConfigError, match=match):
        validate_sharing(*args)


@pytest.fixture
def toy_arch(monkeypatch):
    """An extra architecture, added as one registry entry: no tie pair in its deep region,
    and one with no deep region at all."""
    spec = ArchSpec(
        "toy",
        "toy net",
        (
            Conv("c1", 3, 8, "early"),
            Conv("c2", 8, 8, "early", tie="t"),
            Conv("c3", 8, 8, "early", tie="t", pool=True),
            Conv("c4", 8, 16, "deep"),
            Classifier("fc", 16),
        ),
    )
    flat = dataclasses.replace(
        spec,
        name="flat",
        layers=(
            Conv("c1", 3, 8, "early"),
            Conv("c2", 8, 8, "early", tie="t"),
            Conv("c3", 8, 8, "early", tie="t"),
            Classifier("fc", 8, region="early"),
        ),
    )
    monkeypatch.setitem(ARCHITECTURES, "toy", spec)
    monkeypatch.setitem(ARCHITECTURES, "flat", flat)


def test_regime_that_changes_nothing_is_an_error(toy_arch):
    assert build_model("toy", 3, ensemble_size=2)(torch.randn(2, 3, 4, 4)).shape == (2, 2, 3)
    for sn in ("deep", "all"):
        with pytest.raises(
            ConfigError,
            match=rf"sharing_network='{sn}': toy has no same-shape "
            r"layers to tie in its 'deep' region.*change "
            r"nothing; allowed: \['none', 'early'\]",
        ):
            validate_sharing("toy", "batch", sn, "none")
        with pytest.raises(ConfigError, match=rf"sharing_network='{sn}'"):
            build_model("toy", 3, ensemble_size=2, sharing_network=sn)
    for se in ("deep", "all"):
        with pytest.raises(
            ConfigError,
            match=rf"sharing_ensemble='{se}': flat has no layers in "
            r"its 'deep' region",
        ):
            validate_sharing("flat", "deep", "none", se)
    assert valid_sharing_regimes("toy", "batch") == [
        (sn, se) for sn in ("none", "early") for se in SHARING
    ]


def test_flat_arch_regimes(toy_arch):
    # flat has ties only in the early region and no deep layers: 'all' ties would equal
    # 'early' (error), and ensemble sharing 'deep'/'all' would change nothing (error).
    assert valid_sharing_regimes("flat", "batch") == [
        ("none", "none"),
        ("none", "early"),
        ("early", "none"),
        ("early", "early"),
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
    return {line.split()[0]: line for line in lines[start + 2 :] if line.strip()}


def test_cli_prints_table_and_counts():
    out = subprocess.run(
        [sys.executable, "-m", "core.sharing", "simple_cnn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
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
    rows = _count_rows(capsys.readouterr().out)
    assert rows["none"].split()[1:] == [
        f"{expected_count('vgg11', 'single', 1, 100, 'none', 'none'):,}",
        "-",
        "-",
        "-",
    ]
    assert rows["early"].split()[1:] == ["-"] * 4
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


def _table_rows(text):
    """The layer table: layer name -> (block, region, tie group), cut at the header's columns."""
    lines = text.splitlines()[2:]
    header = lines[0]
    cuts = [header.index(c) for c in ("block", "region", "tie group")]
    assert header.startswith("layer")
    out = {}
    for line in lines[1 : lines.index("")]:
        cols = [line[a:b].strip() for a, b in zip([0, *cuts], [*cuts, None], strict=True)]
        out[cols[0]] = tuple(cols[1:])
    return out


@pytest.mark.parametrize("arch", ["vgg11", "vgg11_share"])
def test_cli_vgg11_tables(arch, capsys):
    from core.sharing import main

    assert main([arch]) == 0
    text = capsys.readouterr().out
    layers = _table_rows(text)
    deep_group = "deep: conv6, conv7, conv8"
    want = {
        "conv1": ("conv3x3 3->64 +maxpool", "early", "-"),
        "conv2": ("conv3x3 64->128 +maxpool", "early", "-"),
        "conv3": ("conv3x3 128->256", "early", "-"),
        "conv4": ("conv3x3 256->256 +maxpool", "early", "-"),
        "conv5": ("conv3x3 256->512", "deep", "-"),
        "conv6": ("conv3x3 512->512 +maxpool", "deep", deep_group),
        "conv7": ("conv3x3 512->512", "deep", deep_group),
        "conv8": ("conv3x3 512->512 +maxpool", "deep", deep_group),
        "fc": ("avgpool, linear 512->K", "deep", "-"),
    }
    if arch == "vgg11":
        assert "No tie group in the early region, so sharing_network early and all" in text
        assert "vgg11_share adds same-shape layers" in text
    else:
        assert "No tie group" not in text
        early_group = "early: conv4, conv4b"
        items = list(want.items())
        want = dict(
            [
                *items[:3],
                ("conv4", ("conv3x3 256->256", "early", early_group)),  # conv4b takes its pool
                ("conv4b", ("conv3x3 256->256 +maxpool", "early", early_group)),
                *items[4:],
            ]
        )
    assert layers == want
    assert list(layers) == list(want)  # table order
    rows = _count_rows(text)
    for sn in SHARING:
        want_row = [
            f"{expected_count(arch, 'batch', 4, 10, sn, se):,}" if sn in NETWORK[arch] else "-"
            for se in SHARING
        ]
        assert rows[sn].split()[1:] == want_row, sn
    if arch == "vgg11":
        assert rows["deep"].split()[1:] == [f"{VGG11_BATCH['deep', se]:,}" for se in SHARING]


# ----------------------------------------------------------------------------------------------
# the shared trunk (sub-ensembles): a deep ensemble with sharing_ensemble='early'
# ----------------------------------------------------------------------------------------------
def _train_flops_by_region(arch: str, k: int = 10, size: int = 32) -> dict[str, int]:
    """Training FLOPs per image of one network, per region: 2 * weights * outputs forward,
    3x that for forward and backward, the first layer's input gradient excepted."""
    out = {"early": 0, "deep": 0}
    for i, lay in enumerate(ARCHITECTURES[arch].layers):
        if isinstance(lay, Conv):
            size //= lay.stride
            fwd = 2 * lay.in_channels * lay.out_channels * lay.kernel_size**2 * size * size
            size //= 2 if lay.pool else 1
        else:
            fwd = 2 * lay.in_features * k
        out[lay.region] += fwd * (2 if i == 0 else 3)
    return out


@pytest.mark.parametrize("arch", ["simple_cnn", "vgg11"])
def test_a_deep_ensemble_sharing_its_early_region_is_a_shared_trunk(arch):
    """ensemble='deep', sharing_ensemble='early' is a shared trunk (Valdenegro-Toro's deep
    sub-ensembles): the early region's layers once (one ordinary network's), the deep region
    (the rest, classifier included) per member, in parameters and in training FLOPs."""
    m = 4
    single = build_model(arch, 10, ensemble="single", ensemble_size=1)
    early = {lay.name for lay in ARCHITECTURES[arch].layers if lay.region == "early"}
    trunk = sum(count_parameters(b) for name, b in single.blocks.items() if name in early)
    rest = count_parameters(single) - trunk
    shared = build_model(arch, 10, ensemble="deep", ensemble_size=m, sharing_ensemble="early")
    assert count_parameters(shared) == trunk + m * rest
    if arch == "simple_cnn":  # counting vgg11's FLOPs takes seconds; the rule is the same
        flops = _train_flops_by_region(arch)
        cfg = TrialConfig(arch=arch, ensemble="deep", ensemble_size=m, sharing_ensemble="early")
        assert config_flops_per_image(cfg, 10) == flops["early"] + m * flops["deep"]
