"""alpha x gamma: the fast-weight init grid (81 cells) of a 4-member VGG11 BatchEnsemble.

python tune_jobs/alpha_gamma.py --smoke --data-dir ../shared/data/cifar10
python tune_jobs/alpha_gamma.py --seeds 3 --address auto --storage-path s3://bucket/studies
"""

from core.config import FAST_WEIGHT_SWEEP
from tune_jobs.cli import cli
from tune_jobs.options import JobOptions
from tune_jobs.study import Study, grid, with_seeds

SMOKE_SWEEP = (-0.5, 0.5)  # a 2 x 2 corner of the grid: same files, minutes on 2 CPUs
CPU_SWEEP = (-1.0, -0.5, 0.0, 0.5, 1.0)  # every other value of the sweep: 5 x 5 cells
# Learn preset: 3 x 3 cells (BatchEnsemble 4 at 20 epochs, ~3.7 h with 3 seeds: sizing in
# tune_jobs/options.py), one value of each kind of init: N(1, 0.5), random signs with even odds
# (inside claim 2's 0.2-0.8) and all ones (1.0: members start alike; 0 is the same init).
LEARN_SWEEP = (-0.5, 0.5, 1.0)
SWEEPS = {"full": FAST_WEIGHT_SWEEP, "cpu": CPU_SWEEP, "learn": LEARN_SWEEP, "smoke": SMOKE_SWEEP}
# The smoke, cpu and learn presets' simple_cnn(_wide): Adam at 3e-3 learns in 4 epochs of 3,600
# images (the smoke's best trial >= 30% test accuracy, benchmarks/smoke_floor.py); 1e-3 is for
# VGG11 on the whole training set.
SMALL_LR = 3e-3


def make_study(opts: JobOptions) -> Study:
    sweep = SWEEPS[opts.preset]
    space = opts.fixed_config(
        arch="vgg11",
        ensemble="batch",
        ensemble_size=4,
        optimizer="adam",
        lr=1e-3 if opts.preset == "full" else SMALL_LR,
        epochs=15,
    )
    space |= {"alpha": grid(sweep), "gamma": grid(sweep)}
    return Study("alpha_gamma", with_seeds(space, opts.seeds), asha=True)


if __name__ == "__main__":
    cli(make_study, doc=__doc__)
