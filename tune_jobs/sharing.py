"""Parameter sharing: within the network x within the ensemble, each none/early/deep/all.

Only the combinations valid for the architecture are run (core.sharing decides). The default
arch is `vgg11_share`, VGG11 plus one 256->256 conv so that the early region has a tie pair,
as the student study did (plain `vgg11` has none: `--set arch=vgg11` runs its 8 valid pairs);
8 members,
alpha = gamma = 0.5, Adam, 10 epochs, batches/s recorded. `--dataset cifar20` repeats it on
CIFAR-100's 20 coarse labels with gradient clipping and early stopping (patience 5), as the
student study did.

    python tune_jobs/sharing.py --smoke --data-dir ../shared/data/cifar10
"""

from core.config import valid_sharing_regimes
from tune_jobs.cli import cli
from tune_jobs.options import JobOptions, Study, grid, with_seeds

CIFAR20 = {"grad_clip": 1.0, "patience": 5, "val_fraction": 0.1}
# Smoke: one regime of each kind (neither, network only, ensemble only, both).
SMOKE_REGIMES = {("none", "none"), ("early", "none"), ("none", "early"), ("all", "all")}


def regimes(arch: str, smoke: bool = False) -> list[dict[str, str]]:
    return [
        {"sharing_network": n, "sharing_ensemble": e}
        for n, e in valid_sharing_regimes(arch, "batch")
        if not smoke or (n, e) in SMOKE_REGIMES
    ]


def make_study(opts: JobOptions) -> Study:
    space = opts.base(
        arch="vgg11_share",
        ensemble="batch",
        ensemble_size=8,
        alpha=0.5,
        gamma=0.5,
        optimizer="adam",
        lr=1e-3,
        epochs=10,
    )
    if opts.dataset == "cifar20":
        space |= CIFAR20
    space["sharing"] = grid(regimes(space["arch"], opts.smoke))
    return Study("sharing", with_seeds(space, opts.seeds))


if __name__ == "__main__":
    cli(make_study, doc=__doc__)
