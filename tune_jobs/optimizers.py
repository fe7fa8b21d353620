"""Adam / SGD / IVON on a single VGG11 and on an 8-member BatchEnsemble (6 cells), plus an
8-member deep ensemble with Adam (a 7th cell: what BatchEnsemble is measured against).

alpha 1.0, gamma 0.2, 15 epochs; 10% of train is held out so that train and validation
curves are reported every epoch. Each optimizer keeps its usual learning rate.

    python tune_jobs/optimizers.py --smoke --data-dir ../shared/data/cifar10
"""

from core.config import OPTIMIZERS
from tune_jobs.cli import cli
from tune_jobs.options import JobOptions
from tune_jobs.study import Study, grid, with_seeds

MODELS = {
    "single": {"ensemble": "single", "ensemble_size": 1},
    "batch8": {"ensemble": "batch", "ensemble_size": 8},
}
# The deep ensemble of the same size, with Adam only: 8 independent networks cost about as much
# as the BatchEnsemble's 8 members, and the question it answers (claim 1 of docs/findings.md:
# where BatchEnsemble stands against it) is not an optimizer question.
DEEP = ({"ensemble": "deep", "ensemble_size": 8}, "adam")
# Each optimizer's recipe, by core.config.OPTIMIZERS' names (the one list of optimizers).
RECIPES = {
    "adam": {"optimizer": "adam", "lr": 1e-3},
    "sgd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
    # IVON: its authors' CIFAR recipe (lr 0.2; hess_init 0.5, prior 2e-4 and ess = train size
    # are TrialConfig's defaults; sources in core.optim's docstring).
    "ivon": {"optimizer": "ivon", "lr": 0.2},
}


# Every preset runs these 7 cells (the learn preset: ~4.2 h with 3 seeds, sizing in
# tune_jobs/options.py).


def make_study(opts: JobOptions) -> Study:
    space = opts.fixed_config(arch="vgg11", alpha=1.0, gamma=0.2, val_fraction=0.1, epochs=15)
    # Bundles: each grid value sets several config fields together (one bundle per cell, so
    # that the deep ensemble is not crossed with every optimizer).
    cells = [m | RECIPES[o] for m in MODELS.values() for o in OPTIMIZERS]
    cells.append(DEEP[0] | RECIPES[DEEP[1]])
    space["cell"] = grid(cells)
    return Study("optimizers", with_seeds(space, opts.seeds))


if __name__ == "__main__":
    cli(make_study, doc=__doc__)
