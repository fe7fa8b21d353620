"""`python -m core.sharing <arch>`: an architecture's layer table (regions, tie groups) and the
distinct parameter count of every valid sharing regime.

The sharing rules themselves are `core.architectures`' (what each architecture allows) and
`core.config.check_model`'s; this module only prints them, building each regime's model on the
meta device to count its parameters.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from core.architectures import (
    ARCHITECTURES,
    REGIONS,
    SHARING,
    ArchSpec,
    LayerSpec,
    regions,
    tie_labels,
)
from core.config import ENSEMBLES, NORMS, check_field, valid_sharing_regimes
from core.errors import ConfigError
from core.models import build_model, count_parameters

__all__ = ["format_table", "main"]


# ----------------------------------------------------------------------------------------------
# the table and the command line
# ----------------------------------------------------------------------------------------------
def _layer_table(spec: ArchSpec, labels: dict[str, list[LayerSpec]]) -> list[str]:
    """One aligned row per layer: name, block, region and its tie group (when it has peers)."""
    rows = [("layer", "block", "region", "tie group (sharing_network)")]
    for layer in spec.layers:
        tie = "-"
        if layer.tie is not None and len(labels[layer.tie]) > 1:
            tie = f"{layer.tie}: " + ", ".join(x.name for x in labels[layer.tie])
        rows.append((layer.name, layer.describe(), layer.region, tie))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _untied_note(spec: ArchSpec, labels: dict[str, list[LayerSpec]]) -> list[str]:
    """Why sharing_network is refused in a region without a tie group (nothing if none)."""
    untied = [
        r for r in REGIONS if not any(len(g) > 1 and g[0].region == r for g in labels.values())
    ]
    if not untied:
        return []
    refused = " and ".join(v for v in SHARING if set(regions(v)) & set(untied))
    lines = [
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
    return lines


def _parameter_counts(
    arch: str, ensemble: str, ensemble_size: int, num_classes: int, norm: str
) -> list[str]:
    """The regime grid: distinct parameters per (sharing_network, sharing_ensemble), '-' where
    the regime is not valid."""
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
                    ensemble_size=ensemble_size,
                    ensemble=ensemble,
                    sharing_network=sn,
                    sharing_ensemble=se,
                    norm=norm,
                )
            row.append(f"{count_parameters(model):,}")
        table.append(row)
    w = max(len(c) for r in table for c in r)
    return [r[0].ljust(8) + "".join(c.rjust(w + 2) for c in r[1:]) for r in table]


def format_table(
    arch: str,
    ensemble: str = "batch",
    ensemble_size: int = 4,
    num_classes: int = 10,
    norm: str = "batch",
) -> str:
    """The layer table of `arch` and the distinct parameter count of every regime."""
    check_field("arch", arch)
    spec = ARCHITECTURES[arch]
    labels = tie_labels(spec)
    lines = [f"{arch}: {spec.description}", ""]
    lines += _layer_table(spec, labels)
    lines += _untied_note(spec, labels)
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
    lines += _parameter_counts(arch, ensemble, ensemble_size, num_classes, norm)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m core.sharing",
        description="Print an architecture's sharing table and parameter counts per regime.",
    )
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
