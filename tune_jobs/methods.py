"""Efficient ensembles at matched cost, M = 4: single, deep ensemble, BatchEnsemble, shared trunk,
Packed-Ensembles and MIMO, at two budgets (each cell's parameters and FLOPs: README, "The
methods study"). `params`: about one network's distinct parameters; `flops`: about M
networks' training FLOPs per image. BatchEnsemble and MIMO (the
authors' b = 4) are at both at once; the single network is the reference of both. A deep
ensemble of one network's parameters is 4 half-width networks, which is Packed-Ensembles with
alpha 2, gamma 1 (the same function); the shared trunk (a deep ensemble sharing its early
region) has one size, between the budgets. Throughput is timed alone after the trials.

    python tune_jobs/methods.py --smoke --data-dir ../shared/data/cifar10
"""

from core.cost import COST_FIELDS
from tune_jobs.cli import cli
from tune_jobs.options import JobOptions
from tune_jobs.sharing import CALIB_STEPS, CALIB_WARMUP, calibrate
from tune_jobs.study import Study, grid, with_seeds

M = 4
PACKED = {"ensemble": "packed", "ensemble_size": M}
TRUNK = {"ensemble": "deep", "ensemble_size": M, "sharing_ensemble": "early"}
CELLS = [  # (method, budget, config)
    ("single", "reference", {"ensemble": "single", "ensemble_size": 1}),
    ("batch", "both", {"ensemble": "batch", "ensemble_size": M}),
    ("mimo", "both", {"ensemble": "mimo", "ensemble_size": M}),  # rho 0, b 4 (CIFAR)
    ("deep", "params", PACKED | {"packed_width": 2.0, "packed_groups": 1}),
    ("packed", "params", PACKED | {"packed_width": 3.0, "packed_groups": 2}),
    ("deep", "flops", {"ensemble": "deep", "ensemble_size": M}),
    ("shared_trunk", "flops", TRUNK),
    ("packed", "flops", PACKED | {"packed_width": 5.5, "packed_groups": 2}),
]
SMOKE_CELLS = (0, 1, 2, 4, 6)  # every kind once (the trunk is a deep ensemble); quick timing


def make_study(opts: JobOptions) -> Study:
    # Adam 1e-3 at every preset: the optimizers and sharing studies' rate, so that the single
    # network, BatchEnsemble and deep ensemble train here as they do for claim 1.
    space = opts.fixed_config(arch="vgg11", optimizer="adam", lr=1e-3, epochs=15)
    cells = [c for i, c in enumerate(CELLS) if not opts.smoke or i in SMOKE_CELLS]
    space["cell"] = grid([cfg | {"extra": {"method": m, "budget": b}} for m, b, cfg in cells])
    space = with_seeds(space, opts.seeds)

    def after(exp_dir, results, run_alone=None):  # a cell: what its training step computes
        steps = (1, 5) if opts.smoke else (CALIB_WARMUP, CALIB_STEPS)
        calibrate(exp_dir, results, space, run_alone, keys=COST_FIELDS, steps=steps)

    return Study("methods", space, after=after, info={"throughput": "timed alone, per cell"})


if __name__ == "__main__":
    cli(make_study, doc=__doc__)
