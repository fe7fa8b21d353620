"""The options every study script takes, its presets, and their checks, without Ray or torch.

`tune_jobs.cli` makes one command-line option of each `JobOptions` field; a study script
builds its space from the options (`JobOptions.fixed_config`, then `tune_jobs.study`'s grid
helpers). `JobOptions.check` refuses a bad option in a moment, before Ray starts (the checks
against the machine are `tune_jobs.preflight`'s); tests/tune_jobs checks that neither Ray nor
torch is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.checks import Check, integer
from core.config import DATASETS, MAX_EPOCHS, parse_field
from core.errors import ConfigError, refusal
from tune_jobs.errors import JobError
from tune_jobs.preflight import (
    check_address,
    check_cpus,
    check_mlflow_uri,
    check_storage_path,
    is_uri,
    local_cpus,
)

# Presets: the scale a study runs at. `full` is each study's own (the student study's VGG11,
# the whole training set, 10-15 epochs: GPU clusters); the others fix config fields on top of
# the study's defaults (and each study script may reduce its grid for them, see README).
# The smoke preset: a pipeline check of about two minutes on 2 CPU cores, the same files as a
# full run, that learns (its best alpha_gamma trial >= 30% test accuracy on the real CIFAR-10:
# benchmarks/smoke_floor.py checks it) but answers no study's question.
# (alpha_gamma's smoke also raises Adam's lr to 3e-3: the preset cannot, as other studies
# sweep or bundle lr.)
SMOKE = {
    "arch": "simple_cnn",
    "train_subset": 4000,
    "test_subset": 500,
    "epochs": 4,
    # robustness at smoke size: under 20% of the trial (benchmarks/robustness_cost.py)
    "corruption_subset": 10,
    "ood_subset": 100,
}
# The CPU preset: each study's answer readable on 2 cores, 3 seeds in about 45 minutes: the
# small CNN, a stratified 5,000-image training subset (10% of it held out), 6 epochs, 2,000
# test images; each study runs a reduced grid (README's studies table names it).
CPU = {"arch": "simple_cnn", "train_subset": 5000, "test_subset": 2000, "epochs": 6}
# The learn preset: a scale at which the networks learn (issue 22), on 2 CPU cores. Every
# training image (18,000 after the 10% validation split of ../shared/data/cifar10's 20,000),
# every test image, simple_cnn_wide (~112k parameters per member), batch 128, a cosine
# schedule that reaches 0 at the last step, and a split that follows the trial's seed.
# 20 epochs: a single network with Adam 3e-3 reaches 72.7% test accuracy in 12 bf16 epochs
# (seed 0, benchmarks/README.md), but a 4-member BatchEnsemble (alpha = gamma = 0.5) gains
# 4.1 pp from 12 to 20 epochs (64.3% -> 68.4%, seeds 0-2: the plateau check, findings/plateau/),
# so at 12 a verdict on an ensemble would still measure how fast it learns. `precision` and
# `channels_last` stay `auto`, which resolves to bf16 + channels_last on a CPU with bf16 units
# (issue 21); the sizes below were measured at that speed.
#
# Sizing (each study's LEARN grid, 3 seeds, two 1-CPU trials at once on 2 cores): seconds per
# epoch with two trials side by side on the 2-core AMD EPYC (avx512_bf16): BatchEnsemble 4
# 48-55 s (the plateau check's 20-epoch runs, findings/plateau/), so ~12 s per member and
# epoch; a single network ~10 s; BatchEnsemble 8 ~112 s (benchmarks/learn_epoch.py); IVON
# +30%; plus ~20 s per trial (start, robustness at the end).
#
#   study          cells x seeds  trial (20 epochs)             trial-hours  wall, 2 at once
#   alpha_gamma    3x3 x 3 = 27   BE4: 980 s                    7.3          3.7 h
#   ensemble_size  3x3 x 3 = 27   BE2/4/8: 500/980/2,260 s      9.3          4.7 h
#   optimizers     7 x 3   = 21   single 220 s, BE8 2,260 s,    8.3          4.2 h
#                                 deep8 1,820 s, IVON +30%
#   sharing        9 x 3   = 27   BE4: <= 980 s (sharing makes  <= 7.3       <= 3.7 h
#                                 a regime cheaper)
#   methods        8 x 3   = 24   ~27 singles' time per seed    ~4.6        ~2.3 h
#                                 (images/s timed alone in its
#                                 smoke: BE4 and MIMO 4-4.5x a
#                                 single's cost, Packed 3-6x)
#
# The four studies of the student study's claims are above issue 22's ~3 hours: 20 epochs
# cost 1.7x the 12 first planned, and smaller grids would leave a claim without the cells
# that test it (alpha_gamma: one value of each kind, N(1, 0.5), random signs, all ones;
# ensemble_size: 2 -> 4 against 4 -> 8 members at each of the student study's three learning
# rates).
#
# To resize: wall hours ~ sum over cells of (epochs * 12 * M + 20) s * seeds / 2 / 3600 (a
# single network: ~10 s per epoch); the cells are each study's "learn" entry
# (alpha_gamma.SWEEPS, ensemble_size.GRIDS, sharing.REGIMES and SMALL_MEMBERS; optimizers runs
# its 7 cells at every preset). The schedule spans each trial's own epochs (a resumed trial
# keeps its checkpointed total; --resume refuses another --epochs): a trial ASHA stops early
# ends mid-schedule, so findings/run.sh runs alpha_gamma's grid with --no-asha.
LEARN = {
    "arch": "simple_cnn_wide",
    "train_subset": None,
    "test_subset": None,
    "epochs": 20,
    "batch_size": 128,
    "schedule": "cosine",
    "split_seed": None,
}
PRESETS = {
    "full": "each study's own scale (VGG11, the whole training set, 10-15 epochs): GPU clusters",
    "cpu": "simple_cnn, 5,000 training images, 6 epochs, a reduced grid: 3 seeds in ~45 min "
    "on 2 CPUs",
    "learn": "simple_cnn_wide, all 18,000 training and 10,000 test images, 20 epochs, cosine "
    "schedule, split seed = seed, a reduced grid: a single network >= 70% test accuracy, "
    "3 seeds in ~2-5 h on 2 CPUs (bf16)",
    "smoke": "a pipeline check of ~2 min on 2 CPUs (simple_cnn, 4,000 images, 4 epochs, a "
    "2x2 grid): it learns, but answers nothing",
}
PRESET_CONFIG: dict[str, dict[str, Any]] = {
    "full": {},
    "cpu": CPU,
    "learn": LEARN,
    "smoke": SMOKE,
}
# Every study holds out this share of the training set (stratified) as its validation split:
# selection (ASHA, the Optuna objective, "best" in the progress table and the report) reads
# validation metrics only, never the test set. `--set val_fraction=...` changes it.
VAL_FRACTION = 0.1

# Upper bounds no study needs: a typo (an extra digit, a pasted huge number) is refused at once
# instead of running for ever. Epochs share TrialConfig's bound (core.config.MAX_EPOCHS).
MAX_SEEDS = 1_000  # replicates per cell; 10 is already a lot
MAX_TRIALS = 100_000  # --max-concurrent and a search's --num-samples
MAX_FAILURES = 100  # retries of one trial
MAX_REDUCTION_FACTOR = 1_000.0  # ASHA keeps 1/factor per rung; 2..4 is usual

# TrialConfig fields that have their own option: the job reads the option (to load the data on
# the driver, to size the trial's resources), so `--set` of the field is refused in its favour.
OWN_OPTION = {
    "dataset": "--dataset",
    "data_dir": "--data-dir",
    "epochs": "--epochs",
    "num_threads": "--cpus-per-trial",  # a trial's torch threads follow its CPUs
}


def _option(
    default: Any, help: str, flag: str | None = None, choices: Iterable[str] | None = None
) -> Any:
    """A JobOptions field: its default, its `--help` text, if not `--field-name` its flag, and
    the values it allows if they are a fixed set (`choices`: the command line offers and checks
    them, `JobOptions.check` checks them too)."""
    metadata: dict[str, Any] = {"help": help}
    if flag is not None:
        metadata["flag"] = flag
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


# A study's name is one folder inside --storage-path: no separators, no `..`, nothing a file
# system, S3 or a shell would read as more than a name. ASCII letters, digits and `_.+=@-`,
# not starting with a dot (`.`, `..`, hidden folders), at most 255 characters (a file name's
# limit on common file systems).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+=@-][A-Za-z0-9_.+=@-]{0,254}")
NAME_ALLOWED = (
    "one folder name inside --storage-path: ASCII letters, digits and '_.+=@-', not starting "
    "with '.', at most 255 characters"
)


@dataclass(kw_only=True)
class JobOptions:
    """The options every study script takes; `tune_jobs.cli` makes one command-line option of
    each field (`--field-name`, or `flag` from the field's metadata) with the field's help."""

    preset: str = _option("full", "The study's scale (see below).", choices=PRESETS)
    smoke: bool = _option(False, "Alias of --preset smoke: a pipeline check of ~2 min on 2 CPUs.")
    dataset: str = _option("cifar10", "The dataset every trial trains on.", choices=DATASETS)
    data_dir: str | None = _option(None, "Dataset root (else $ENSEMBLE_DATA_DIR, else download).")
    epochs: int | None = _option(None, "Epochs per trial (default: the study's).")
    seeds: int = _option(1, "Replicates per cell: seed becomes a grid dimension 0..N-1.")
    address: str | None = _option(
        None, "Ray address; 'auto' joins a running cluster (default: start Ray locally)."
    )
    storage_path: str = _option("~/ray_results", "Experiment root: local folder, s3:// or gs://.")
    name: str | None = _option(
        None, "Experiment name, a folder in --storage-path (default: the study's name)."
    )
    resume: bool = _option(False, "Continue the interrupted experiment of this name.")
    extend: bool = _option(
        False,
        "Add trials to the finished experiment of this name: a larger --seeds (or a grid that "
        "grew), a search's larger --num-samples; the rest as saved.",
    )
    cpus_per_trial: float = _option(1.0, "CPUs per trial; also its torch thread count.")
    gpus_per_trial: float | None = _option(
        None,
        "GPUs per trial, fractions share a GPU (default: 1 when the cluster has GPUs, else 0).",
    )
    max_concurrent: int | None = _option(None, "Most trials at once (default: as resources allow).")
    asha: bool | None = _option(None, "ASHA early stopping of weak trials (default: the study's).")
    grace_period: int = _option(2, "ASHA: epochs before a trial can be stopped.")
    reduction_factor: float = _option(3.0, "ASHA: keep 1/factor of trials at each rung.")
    max_failures: int = _option(3, "Retries of a failed trial from its last checkpoint.")
    mlflow_uri: str | None = _option(
        None,
        "Also log every trial to this MLflow tracking URI (file:///folder, sqlite:///file.db, "
        "http://host:port); needs the mlflow extra.",
    )
    overrides: tuple[str, ...] = _option(
        (), "Fix a config field, e.g. --set norm=member (repeatable).", flag="--set"
    )

    def __post_init__(self) -> None:
        # --smoke is --preset smoke; `smoke` stays true of a smoke study either way.
        if self.smoke and self.preset == "full":
            self.preset = "smoke"
        self.smoke = self.smoke or self.preset == "smoke"

    def check(self) -> None:
        """Option errors that need no Ray: one message naming option, value and what is allowed.
        The command line runs this before the study script builds anything from the options."""
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise JobError(refusal(flag_of(f.name), getattr(self, f.name), list(allowed)))
        if self.smoke and self.preset != "smoke":
            raise JobError(
                refusal(
                    "--smoke",
                    True,
                    f"--preset {self.preset} alone",
                    why=f"--smoke is --preset smoke, which contradicts --preset {self.preset}",
                )
            )
        if self.extend and self.resume:
            raise JobError(
                refusal(
                    "--extend",
                    True,
                    "--extend (a finished study) or --resume (an unfinished one) alone",
                    why="--resume continues an unfinished study or extension, --extend adds "
                    "trials to a finished one",
                )
            )
        if self.name is not None and not NAME_PATTERN.fullmatch(self.name):
            raise JobError(refusal("--name", self.name, NAME_ALLOWED))
        check_option("--seeds", self.seeds, integer(lo=1, hi=MAX_SEEDS))
        if self.epochs is not None:
            check_option("--epochs", self.epochs, integer(lo=1, hi=MAX_EPOCHS))
        c = self.cpus_per_trial
        if not math.isfinite(c) or c <= 0:
            raise JobError(refusal("--cpus-per-trial", c, "a number > 0"))
        g = self.gpus_per_trial
        if g is not None and (not math.isfinite(g) or g < 0 or (g > 1 and g != int(g))):
            raise JobError(refusal("--gpus-per-trial", g, "a fraction in [0, 1] or a whole number"))
        if self.max_concurrent is not None:
            check_option("--max-concurrent", self.max_concurrent, integer(lo=1, hi=MAX_TRIALS))
        check_option("--grace-period", self.grace_period, integer(lo=1, hi=MAX_EPOCHS))
        r = self.reduction_factor
        if not math.isfinite(r) or not 1 < r <= MAX_REDUCTION_FACTOR:
            raise JobError(
                refusal("--reduction-factor", r, f"a number > 1 and <= {MAX_REDUCTION_FACTOR:g}")
            )
        check_option("--max-failures", self.max_failures, integer(lo=0, hi=MAX_FAILURES))
        if self.data_dir is not None and not is_uri(self.data_dir):
            if not Path(self.data_dir).expanduser().exists():
                raise JobError(
                    refusal("--data-dir", self.data_dir, "an existing folder", why="no such folder")
                )
        if not is_uri(self.storage_path):
            check_storage_path(self.storage_path)
        check_address(self.address)
        if self.mlflow_uri is not None:
            check_mlflow_uri(self.mlflow_uri)
        if self.address is None:  # a local Ray: trials run on this machine's CPUs
            check_cpus(self.cpus_per_trial, local_cpus(), "this machine")

    def fixed_config(self, **study: Any) -> dict[str, Any]:
        """The fixed part of every trial's config: the validation split (VAL_FRACTION), study
        defaults, then the preset (`PRESET_CONFIG`), then CLI."""
        cfg = {"val_fraction": VAL_FRACTION, **study}
        cfg.update(PRESET_CONFIG.get(self.preset, {}))
        if self.epochs is not None:
            cfg["epochs"] = self.epochs
        cfg.update(self.parsed_overrides())
        # Last, so that neither a study's defaults nor --set can differ from what the driver
        # loads (`data_location`) and the resources a trial gets.
        cfg["dataset"] = self.dataset
        cfg.pop("data_dir", None)
        if self.data_location() is not None:
            cfg["data_dir"] = self.data_location()
        cfg["num_threads"] = max(1, int(self.cpus_per_trial))
        return cfg

    def data_location(self) -> str | None:
        """`--data-dir` as every trial's config names it and the driver loads it: resolved,
        or None (then $ENSEMBLE_DATA_DIR, else the user cache)."""
        if self.data_dir is None or is_uri(self.data_dir):
            return self.data_dir
        return str(Path(self.data_dir).expanduser().resolve())

    def parsed_overrides(self) -> dict[str, Any]:
        """`--set key=value` pairs, typed like the TrialConfig field they set. A field with its
        own option (`OWN_OPTION`) is refused: the option is the one place its value comes from."""
        out: dict[str, Any] = {}
        for key, item, raw in set_items(self.overrides):
            if key in OWN_OPTION:
                flag = OWN_OPTION[key]
                raise JobError(
                    refusal(
                        "--set",
                        item,
                        f"{flag} {raw}"
                        + (" (a trial's torch threads follow its CPUs)" * (key == "num_threads")),
                        why=f"{key!r} has its own option, which the job reads (to load the "
                        "data on the driver and size each trial) and which --set cannot change",
                    )
                )
            out[key] = parse_field(key, raw)
        return out

    @property
    def experiment_name(self) -> str:
        return self.name or "study"

    def storage_root(self) -> str:
        if is_uri(self.storage_path):
            return self.storage_path.rstrip("/")
        return str(Path(self.storage_path).expanduser().resolve())


def set_items(items: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(key, the item as given, the value's text) of each `--set key=value` item, in order,
    key and value stripped; an item without `=` is refused when it is reached. The one reading
    of `--set`: parsing the values (`JobOptions.parsed_overrides`), refusing a swept key
    (`tune_jobs.study`) and comparing them on `--resume` (`tune_jobs.resume`)."""
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise JobError(refusal("--set", item, "key=value, e.g. --set norm=member"))
        yield key.strip(), item, raw.strip()


def check_option(flag: str, value: Any, check: Check) -> None:
    """An option's value against a `core.checks` check (`integer(lo=1, hi=MAX_SEEDS)`): its
    refusal, worded as a config field's is, raised as a JobError."""
    try:
        check(flag, value)
    except ConfigError as e:
        raise JobError(str(e)) from None


def flag_of(field_name: str) -> str:
    """The command-line flag of a JobOptions field: `--data-dir`, `--set`."""
    f = {f.name: f for f in dataclasses.fields(JobOptions)}[field_name]
    return f.metadata.get("flag", "--" + field_name.replace("_", "-"))
