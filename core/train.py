"""One trial without Ray, for quick checks: `python -m core.train --arch simple_cnn --epochs 1`.

Every `TrialConfig` field is an option (`--ensemble-size 8`, `--alpha none`); the run prints
one line of metrics per epoch and exits non-zero on a bad config value.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from core.config import ConfigError, TrialConfig, parse_field
from core.trainable import fit

_SHOWN = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_acc",
    "test_loss",
    "test_ece",
    "val_acc",
    "val_loss",
    "batches_per_s",
    "epoch_s",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__)
    hints = typing.get_type_hints(TrialConfig)
    for f in dataclasses.fields(TrialConfig):
        if f.name == "extra":
            continue
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=str,
            default=None,
            metavar=_metavar(hints[f.name]),
            help=f"default: {f.default!r}",
        )
    return p


def _metavar(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return "|".join(getattr(a, "__name__", str(a)) for a in args).upper()


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        values = {k: parse_field(k, v) for k, v in vars(ns).items() if v is not None}
        cfg = TrialConfig.from_dict(values)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def report(metrics: dict[str, Any], _state: Any) -> None:
        shown = {k: metrics[k] for k in _SHOWN if k in metrics}
        line = "  ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
        )
        flags = [k for k in ("diverged", "early_stopped") if metrics.get(k)]
        print(line + ("  " + " ".join(flags) if flags else ""), flush=True)

    print(f"trial: {_params_line(cfg)}", flush=True)
    try:
        fit(cfg, reporter=report)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _params_line(cfg: TrialConfig) -> str:
    return (
        f"{cfg.arch} {cfg.ensemble} x{cfg.ensemble_size} alpha={cfg.alpha} gamma={cfg.gamma} "
        f"sharing={cfg.sharing_network}/{cfg.sharing_ensemble} {cfg.optimizer} lr={cfg.lr}"
    )


if __name__ == "__main__":
    sys.exit(main())
