"""Parameter sharing between layers (`sharing_network`) and between members
(`sharing_ensemble`).

Every architecture's table (`core.models.ARCHITECTURES`) puts each layer in one of two regions,
`early` (a prefix of the network, near the input) and `deep` (the rest, near the output,
classifier included), and gives same-shape layers a common tie label. Both knobs take a value in
{none, early, deep, all}; `all` means both regions.

* sharing_network = R: inside region(s) R, the layers of each tie group use the SAME slow-weight
  nn.Parameter (`weight`). Each layer keeps its own fast weights (`alpha`, `gamma`), bias and
  norm.
* sharing_ensemble = R: inside region(s) R, all members use one ordinary layer (nn.Conv2d,
  nn.BatchNorm2d, nn.Linear): no fast weights in a batch ensemble, one copy instead of M in a
  deep ensemble. A shared region at the input is computed ONCE on the untiled batch (B, ...)
  and tiled to the members after it; a shared region after per-member layers runs on all
  M * B rows. `all`: every layer shared, members identical (output still (M, B, K)).

The two combine freely. A value that would change nothing for an architecture (a region
without tie groups, an empty region, ensemble sharing in a `single` network) is a
`ConfigError`, never a silent alias of `none`. An architecture whose region has no same-shape
layers may name a `tie_variant`: a registry entry that adds such layers (vgg11 -> vgg11_share,
the student study's VGG11 with an extra 256->256 conv), suggested by that error.

`python -m core.sharing <arch>` prints the table and the distinct parameter count of every
valid regime.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.config import ENSEMBLES, NORMS, SHARING, ConfigError

if TYPE_CHECKING:  # core.models imports this module
    from torch import nn

    from core.models import ArchSpec

__all__ = [
    "REGIONS",
    "format_table",
    "regions",
    "shared_layer_names",
    "tie_groups",
    "tie_labels",
    "tie_slow_weights",
    "valid_sharing_regimes",
    "validate_sharing",
]

REGIONS = ("early", "deep")  # in network order


def regions(value: str) -> tuple[str, ...]:
    """The regions a sharing value covers: none -> (), early, deep, all -> both."""
    if value not in SHARING:
        raise ConfigError(f"sharing value {value!r} is not allowed; choose one of {list(SHARING)}")
    return {"none": (), "early": ("early",), "deep": ("deep",), "all": REGIONS}[value]


def tie_labels(spec: ArchSpec) -> dict[str, list]:
    """Tie label -> the layer specs carrying it (in table order), for every label."""
    groups: dict[str, list] = {}
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


def _spec(arch: str) -> ArchSpec:
    from core.models import ARCHITECTURES  # late: core.models imports this module

    if arch not in ARCHITECTURES:
        raise ConfigError(f"arch={arch!r} is not allowed; choose one of {list(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def validate_sharing(arch: str, ensemble: str, sharing_network: str, sharing_ensemble: str) -> None:
    """Raise `ConfigError` unless (sharing_network, sharing_ensemble) is a valid regime for
    `arch` and `ensemble`: known values, and each region it names changes the model."""
    spec = _spec(arch)
    if ensemble not in ENSEMBLES:
        raise ConfigError(f"ensemble={ensemble!r} is not allowed; choose one of {list(ENSEMBLES)}")
    for name, value in (
        ("sharing_network", sharing_network),
        ("sharing_ensemble", sharing_ensemble),
    ):
        if value not in SHARING:
            raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(SHARING)}")
    for region in regions(sharing_network):
        if not any(len(g) > 1 and g[0].region == region for g in tie_labels(spec).values()):
            allowed = _allowed_network(spec)
            raise ConfigError(
                f"sharing_network={sharing_network!r}: {arch} has no same-shape layers to tie "
                f"in its {region!r} region, so this would change nothing; allowed: {allowed}"
                + _variant_hint(spec)
            )
    if ensemble == "single" and sharing_ensemble != "none":
        raise ConfigError(
            f"sharing_ensemble={sharing_ensemble!r}: a 'single' network has no members to "
            "share layers between; allowed: ['none']"
        )
    for region in regions(sharing_ensemble):
        if not any(layer.region == region for layer in spec.layers):
            raise ConfigError(
                f"sharing_ensemble={sharing_ensemble!r}: {arch} has no layers in its {region!r} "
                f"region, so this would change nothing; allowed: {_allowed_ensemble(spec)}"
            )


def _variant_hint(spec: ArchSpec) -> str:
    if spec.tie_variant is None:
        return ""
    return (
        f"; or use arch={spec.tie_variant!r}, which adds same-shape layers so that every "
        "region has a tie group"
    )


def _allowed_network(spec: ArchSpec) -> list[str]:
    have = {g[0].region for g in tie_labels(spec).values() if len(g) > 1}
    return [v for v in SHARING if set(regions(v)) <= have]


def _allowed_ensemble(spec: ArchSpec) -> list[str]:
    have = {layer.region for layer in spec.layers}
    return [v for v in SHARING if set(regions(v)) <= have]


def valid_sharing_regimes(arch: str, ensemble: str) -> list[tuple[str, str]]:
    """All valid (sharing_network, sharing_ensemble) pairs for `arch` and `ensemble`,
    ('none', 'none') first."""
    _spec(arch)
    if ensemble not in ENSEMBLES:
        raise ConfigError(f"ensemble={ensemble!r} is not allowed; choose one of {list(ENSEMBLES)}")
    out = []
    for sn in SHARING:
        for se in SHARING:
            try:
                validate_sharing(arch, ensemble, sn, se)
            except ConfigError:
                continue
            out.append((sn, se))
    return out


def tie_slow_weights(model: nn.Module, groups: Sequence[tuple[str, ...]]) -> None:
    """Make every layer of each group use the first layer's `weight` Parameter (same object).

    Only `weight` is replaced: fast weights, biases and norms stay per layer.
    """
    for group in groups:
        mods = [_weight_owner(model.blocks[name]) for name in group]
        first = mods[0]
        for name, mod in zip(group[1:], mods[1:], strict=True):
            if type(mod) is not type(first) or mod.weight.shape != first.weight.shape:
                raise ValueError(f"cannot tie {group[0]} and {name}: different layer or shape")
            mod.weight = first.weight


def _weight_owner(block: nn.Module) -> nn.Module:
    return block.conv if hasattr(block, "conv") else block.linear


# ----------------------------------------------------------------------------------------------
# the table and the command line
# ----------------------------------------------------------------------------------------------
def format_table(
    arch: str,
    ensemble: str = "batch",
    ensemble_size: int = 4,
    num_classes: int = 10,
    norm: str = "batch",
) -> str:
    """The layer table of `arch` and the distinct parameter count of every regime."""
    import torch

    from core.models import build_model, count_parameters

    spec = _spec(arch)
    labels = tie_labels(spec)
    lines = [f"{arch}: {spec.description}", ""]
    rows = [("layer", "block", "region", "tie group (sharing_network)")]
    for layer in spec.layers:
        tie = "-"
        if layer.tie is not None and len(labels[layer.tie]) > 1:
            tie = f"{layer.tie}: " + ", ".join(x.name for x in labels[layer.tie])
        rows.append((layer.name, layer.describe(), layer.region, tie))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    untied = [
        r for r in REGIONS if not any(len(g) > 1 and g[0].region == r for g in labels.values())
    ]
    if untied:
        refused = " and ".join(v for v in SHARING if set(regions(v)) & set(untied))
        lines += [
            "",
            f"No tie group in the {' and '.join(untied)} region, so sharing_network "
            f"{refused} would change nothing",
            "and is refused.",
        ]
        if spec.tie_variant:
            lines[-1] = (
                f"and is refused; {spec.tie_variant} adds same-shape layers so that "
                "every region has a tie group."
            )
    lines += [
        "",
        "early = the layers near the input, deep = the rest (classifier included); all = both.",
        "sharing_network ties the slow `weight` of each tie group in the chosen region(s);",
        "sharing_ensemble makes the chosen region(s) one ordinary layer for all members (an",
        "early shared region is computed once on the untiled batch).",
        "",
        f"Distinct parameters: ensemble={ensemble}, ensemble_size={ensemble_size}, "
        f"num_classes={num_classes}, norm={norm}",
        "rows: sharing_network, columns: sharing_ensemble ('-': not a valid regime)",
    ]
    valid = set(valid_sharing_regimes(arch, ensemble))
    header = ["", *SHARING]
    table = [header]
    for sn in SHARING:
        row = [sn]
        for se in SHARING:
            if (sn, se) not in valid:
                row.append("-")
                continue
            with torch.device("meta"):  # shapes only: no memory, no init cost
                model = build_model(
                    arch,
                    num_classes,
                    ensemble_size,
                    ensemble,
                    sharing_network=sn,
                    sharing_ensemble=se,
                    norm=norm,
                )
            row.append(f"{count_parameters(model):,}")
        table.append(row)
    w = max(len(c) for r in table for c in r)
    for r in table:
        lines.append(r[0].ljust(8) + "".join(c.rjust(w + 2) for c in r[1:]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m core.sharing",
        description="Print an architecture's sharing table and parameter counts per regime.",
    )
    from core.models import ARCHITECTURES

    p.add_argument("arch", choices=list(ARCHITECTURES))
    p.add_argument("--ensemble", default="batch", choices=list(ENSEMBLES))
    p.add_argument(
        "--ensemble-size",
        type=int,
        default=None,
        help="members (default: 4, or 1 for --ensemble single)",
    )
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--norm", default="batch", choices=list(NORMS))
    args = p.parse_args(argv)
    size = args.ensemble_size
    if size is None:
        size = 1 if args.ensemble == "single" else 4
    try:
        print(format_table(args.arch, args.ensemble, size, args.num_classes, args.norm))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
