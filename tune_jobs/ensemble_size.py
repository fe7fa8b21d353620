"""Ensemble size 2..9 x learning rate {0.02, 0.002, 0.0002} (24 cells), alpha = gamma = 0.5.

The batch size is fixed (128) for every ensemble size: each member sees every example.

    python tune_jobs/ensemble_size.py --smoke --data-dir ../shared/data/cifar10
"""

from tune_jobs.cli import cli
from tune_jobs.options import JobOptions
from tune_jobs.study import Study, grid, with_seeds

SIZES = tuple(range(2, 10))
LRS = (0.02, 0.002, 0.0002)
# cpu: every other size; learn: 2, 4 and 8 (20 epochs, ~4.7 h with 3 seeds; 6 would add 1.8 h:
# sizing in tune_jobs/options.py)
GRIDS = {
    "full": (SIZES, LRS),
    "cpu": ((2, 4, 6, 8), LRS),
    "learn": ((2, 4, 8), LRS),
    "smoke": ((2, 4), (0.002,)),
}


def make_study(opts: JobOptions) -> Study:
    sizes, lrs = GRIDS[opts.preset]
    space = opts.fixed_config(
        arch="vgg11",
        ensemble="batch",
        alpha=0.5,
        gamma=0.5,
        optimizer="adam",
        batch_size=128,
        epochs=15,
    )
    space |= {"ensemble_size": grid(sizes), "lr": grid(lrs)}
    return Study("ensemble_size", with_seeds(space, opts.seeds))


if __name__ == "__main__":
    cli(make_study, doc=__doc__)
