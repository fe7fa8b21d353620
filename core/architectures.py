"""The architecture registry: every architecture as a data table, and what each one allows.

Torch-free, so that a config can be checked (on the driver, before Ray starts) without importing
torch or any model code; `core.models` builds networks from these tables.

Every architecture is ONE entry of `ARCHITECTURES`: an `ArchSpec` whose table lists each layer
with its shape, its sharing region and its tie group. `python -m core.sharing <arch>` prints it.

Sharing vocabulary. Each layer lies in one of two regions, `early` (a prefix of the network, near
the input) and `deep` (the rest, near the output, classifier included); same-shape layers carry a
common tie label. Both sharing knobs take a value of `SHARING`; `all` means both regions:

* sharing_network = R: inside region(s) R, the layers of each tie group use the SAME slow-weight
  nn.Parameter (`weight`). Each layer keeps its own fast weights, bias and norm.
* sharing_ensemble = R: inside region(s) R, all members use one ordinary layer (no fast weights
  in a batch ensemble, one copy instead of M in a deep ensemble). A shared region at the input
  is computed once on the untiled batch and tiled to the members after it.

A value that would change nothing for an architecture (a region without tie groups, an empty
region) is refused by `check_sharing`, never a silent alias of `none`. An architecture whose
region has no same-shape layers may name a `tie_variant`: a registry entry that adds such layers
(vgg11 -> vgg11_share, the student study's VGG11 with an extra 256->256 conv), suggested by that
error.

Adding an architecture: write its table (a function returning `Conv`/`Classifier` rows) and add
one `ArchSpec` to `ARCHITECTURES`; nothing else names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError, refusal

__all__ = [
    "ARCHITECTURES",
    "REGIONS",
    "SHARING",
    "ArchSpec",
    "Classifier",
    "Conv",
    "LayerSpec",
    "allowed_sharing",
    "check_sharing",
    "regions",
    "shared_layer_names",
    "tie_groups",
    "tie_labels",
]

REGIONS = ("early", "deep")  # in network order
SHARING = ("none", "early", "deep", "all")  # values of sharing_network and sharing_ensemble
_COVERS = {"none": (), "early": ("early",), "deep": ("deep",), "all": REGIONS}


# ----------------------------------------------------------------------------------------------
# layer tables
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    """A conv -> norm -> ReLU (-> 2x2 max-pool) block."""

    name: str
    in_channels: int
    out_channels: int
    region: str  # "early" | "deep"
    tie: str | None = None  # layers with the same label tie slow weights under sharing_network
    stride: int = 1
    pool: bool = False
    kernel_size: int = 3
    padding: int = 1

    @property
    def shape(self) -> tuple:
        return (
            "conv",
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
        )

    def describe(self) -> str:
        k = self.kernel_size
        s = f" /{self.stride}" if self.stride != 1 else ""
        p = " +maxpool" if self.pool else ""
        return f"conv{k}x{k}{s} {self.in_channels}->{self.out_channels}{p}"


@dataclass(frozen=True)
class Classifier:
    """Global average pooling, then a linear layer to the classes."""

    name: str
    in_features: int
    region: str = "deep"
    tie: str | None = None

    @property
    def shape(self) -> tuple:
        return ("linear", self.in_features)

    def describe(self) -> str:
        return f"avgpool, linear {self.in_features}->K"


LayerSpec = Conv | Classifier


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: its layer table (order, shapes, regions, tie groups)."""

    name: str
    description: str
    layers: tuple[LayerSpec, ...]
    # A registry entry that adds same-shape layers so that every region has a tie group; named
    # in the error when a sharing_network value would change nothing for this architecture.
    tie_variant: str | None = None

    def __post_init__(self) -> None:
        names = [lay.name for lay in self.layers]
        assert len(set(names)) == len(names), f"{self.name}: duplicate layer names"
        regions = [lay.region for lay in self.layers]
        assert set(regions) <= set(REGIONS), f"{self.name}: unknown region"
        # the early region is a prefix and the deep region the rest of the network
        assert regions == sorted(regions, key=REGIONS.index), (
            f"{self.name}: early layers must all come before deep layers"
        )
        assert isinstance(self.layers[-1], Classifier), f"{self.name}: must end in a Classifier"
        for group in tie_labels(self).values():
            first = group[0]
            for other in group[1:]:
                assert other.shape == first.shape and other.region == first.region, (
                    f"{self.name}: tied layers {first.name} and {other.name} differ in shape "
                    "or region"
                )

    @property
    def min_input_size(self) -> int:
        """Smallest image side the pooling/striding chain accepts."""
        size = 1
        for lay in self.layers:
            if isinstance(lay, Conv):
                size *= lay.stride * (2 if lay.pool else 1)
        return size


def _vgg11_layers(share: bool = False) -> tuple[LayerSpec, ...]:
    """CIFAR VGG11 (config A: 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M).

    Regions: early = the 64/128/256-channel convs (conv1-conv4, at 32, 16, 8 px), deep = the
    512-channel convs and the classifier (conv5-conv8, fc, at 4, 2, 1 px). The deep tie group is
    the three 512->512 convs. The early region has no two layers of one shape, so plain vgg11
    refuses sharing_network early/all; `share=True` adds conv4b (256->256, after conv4, before
    the pool), as the student study did, to give the early region the tie pair conv4/conv4b.
    """
    e, d = "early", "deep"
    if share:
        stage3 = (
            Conv("conv4", 256, 256, e, tie="early"),
            Conv("conv4b", 256, 256, e, tie="early", pool=True),  # added: early tie partner
        )
    else:
        stage3 = (Conv("conv4", 256, 256, e, pool=True),)
    return (
        Conv("conv1", 3, 64, e, pool=True),  # 32x32
        Conv("conv2", 64, 128, e, pool=True),  # 16x16
        Conv("conv3", 128, 256, e),  # 8x8
        *stage3,
        Conv("conv5", 256, 512, d),  # 4x4
        Conv("conv6", 512, 512, d, tie="deep", pool=True),
        Conv("conv7", 512, 512, d, tie="deep"),  # 2x2
        Conv("conv8", 512, 512, d, tie="deep", pool=True),
        Classifier("fc", 512),  # 1x1
    )


def _simple_cnn_layers(width: int = 16) -> tuple[LayerSpec, ...]:
    """simple_cnn's table: three convs of `width` channels at 1/2 resolution, three of
    2 * `width` at 1/4, a linear classifier (width 16: simple_cnn, 32: simple_cnn_wide)."""
    e, d = "early", "deep"
    w, w2 = width, 2 * width
    return (
        Conv("conv1", 3, w, e, stride=2),  # 32x32 -> 16x16
        Conv("conv2", w, w, e, tie="early"),
        Conv("conv3", w, w, e, tie="early", pool=True),
        Conv("conv4", w, w2, d),  # 8x8
        Conv("conv5", w2, w2, d, tie="deep"),
        Conv("conv6", w2, w2, d, tie="deep", pool=True),
        Classifier("fc", w2),  # 4x4 -> global average
    )


# ----------------------------------------------------------------------------------------------
# sharing rules
# ----------------------------------------------------------------------------------------------
def regions(value: str) -> tuple[str, ...]:
    """The regions a (valid) sharing value covers: none -> (), early, deep, all -> both."""
    return _COVERS[value]


def tie_labels(spec: ArchSpec) -> dict[str, list[LayerSpec]]:
    """Tie label -> the layer specs carrying it (in table order), for every label."""
    groups: dict[str, list[LayerSpec]] = {}
    for layer in spec.layers:
        if layer.tie is not None:
            groups.setdefault(layer.tie, []).append(layer)
    return groups


def tie_groups(spec: ArchSpec, sharing_network: str) -> list[tuple[str, ...]]:
    """Names of the layers tied together under `sharing_network`, one tuple per group."""
    active = regions(sharing_network)
    return [
        tuple(layer.name for layer in group)
        for group in tie_labels(spec).values()
        if len(group) > 1 and group[0].region in active
    ]


def shared_layer_names(spec: ArchSpec, sharing_ensemble: str) -> set[str]:
    """Names of the layers all members share under `sharing_ensemble`."""
    active = regions(sharing_ensemble)
    return {layer.name for layer in spec.layers if layer.region in active}


def _tied_regions(spec: ArchSpec) -> set[str]:
    return {g[0].region for g in tie_labels(spec).values() if len(g) > 1}


def allowed_sharing(spec: ArchSpec) -> tuple[list[str], list[str]]:
    """The sharing_network and sharing_ensemble values that change `spec` (none included)."""
    tied, present = _tied_regions(spec), {layer.region for layer in spec.layers}
    network = [v for v in SHARING if set(regions(v)) <= tied]
    ensemble = [v for v in SHARING if set(regions(v)) <= present]
    return network, ensemble


def check_sharing(arch: str, sharing_network: str, sharing_ensemble: str) -> None:
    """Refuse a sharing value that would change nothing for `arch` (values already known)."""
    spec = ARCHITECTURES[arch]
    network, ensemble = allowed_sharing(spec)
    tied, present = _tied_regions(spec), {layer.region for layer in spec.layers}
    for region in regions(sharing_network):
        if region not in tied:
            hint = ""
            if spec.tie_variant is not None:
                hint = (
                    f"; or use arch={spec.tie_variant!r}, which adds same-shape layers so that "
                    "every region has a tie group"
                )
            why = (
                f"{arch} has no same-shape layers to tie in its {region!r} region, so this "
                "would change nothing"
            )
            raise ConfigError(refusal("sharing_network", sharing_network, network, why) + hint)
    for region in regions(sharing_ensemble):
        if region not in present:
            why = f"{arch} has no layers in its {region!r} region, so this would change nothing"
            raise ConfigError(refusal("sharing_ensemble", sharing_ensemble, ensemble, why))


# ----------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------
ARCHITECTURES: dict[str, ArchSpec] = {
    "simple_cnn": ArchSpec(
        "simple_cnn",
        "6 convs (16-16-16 at 1/2 resolution, 32-32-32 at 1/4) and a linear classifier; "
        "2.8M multiply-adds per image and member, made for quick CPU runs",
        _simple_cnn_layers(),
    ),
    # The learn preset's network (tune_jobs.options.LEARN): simple_cnn's table at twice the
    # width, ~112k parameters per member; a single network reaches >= 70% CIFAR-10 test
    # accuracy in about 8-12 epochs on 18,000 images, which simple_cnn (~29k, train accuracy
    # 72% after 20 epochs) does not.
    "simple_cnn_wide": ArchSpec(
        "simple_cnn_wide",
        "simple_cnn at twice the width (6 convs 32-32-32 at 1/2 resolution, 64-64-64 at 1/4) "
        "and a linear classifier; 10.8M multiply-adds per image and member",
        _simple_cnn_layers(width=32),
    ),
    "vgg11": ArchSpec(
        "vgg11",
        "CIFAR VGG11 (8 convs 64-128-256-256-512-512-512-512, BatchNorm, max-pooling after "
        "conv1, 2, 4, 6, 8, linear classifier); 153M multiply-adds per 32x32 image and member",
        _vgg11_layers(),
        tie_variant="vgg11_share",
    ),
    "vgg11_share": ArchSpec(
        "vgg11_share",
        "the student study's VGG11 variant: vgg11 plus one extra 256->256 conv (conv4b, after "
        "conv4) so that every region has a tie pair; 191M multiply-adds per 32x32 image and "
        "member",
        _vgg11_layers(share=True),
    ),
}
