"""A study and its grid, without Ray (but for checking ASHA's rungs against Ray's own)."""

import pytest

from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions
from tune_jobs.record import study_record
from tune_jobs.study import (
    Study,
    asha_rungs,
    check_study,
    grid,
    grid_configs,
    robustness_epochs,
    with_seeds,
)


def test_asha_is_refused_for_a_multi_objective_study():
    study = Study("s", {"epochs": 1}, metric=["val_acc", "params"], mode=["max", "min"])
    check_study(study, JobOptions())  # the study's default (off) is fine
    with pytest.raises(JobError, match="--asha=True: ASHA ranks trials by one metric"):
        check_study(study, JobOptions(asha=True))


def test_grid_helpers():
    space = with_seeds({"lr": grid([0.1, 0.01]), "epochs": 1}, 3)
    configs = grid_configs(space)
    assert len(configs) == 6 == Study("s", space).trial_count
    assert {(c["lr"], c["seed"]) for c in configs} == {
        (lr, s) for lr in (0.1, 0.01) for s in range(3)
    }
    assert with_seeds({}, 1) == {"seed": 0}
    assert Study("s", space, num_samples=4, make_search_alg=lambda _: None).trial_count == 4


@pytest.mark.parametrize(
    ("grace", "factor", "max_t"),
    [(2, 3.0, 4), (2, 3.0, 6), (2, 3.0, 15), (1, 2.0, 10), (1, 3.0, 27), (3, 2.5, 40), (5, 3.0, 5)],
)
def test_asha_rungs_are_rays_own(grace, factor, max_t):
    """The epochs where robustness is also measured are exactly where Ray's ASHA decides:
    its bracket's rung milestones, each reached at the first whole epoch >= the milestone."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = ASHAScheduler(
        time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=factor
    )
    (bracket,) = scheduler._brackets
    milestones = [m for m, _ in bracket._rungs]
    decided = {e for e in range(1, max_t + 1) for m in milestones if e - 1 < m <= e}
    assert asha_rungs(grace, factor, max_t) == tuple(sorted(e for e in decided if e < max_t))


def test_an_asha_study_records_its_robustness_epochs():
    from tune_jobs import alpha_gamma

    study = alpha_gamma.make_study(JobOptions(smoke=True))
    assert robustness_epochs(study, JobOptions(smoke=True)) == (2,)  # 4 epochs, grace 2
    assert study_record(study, JobOptions(smoke=True))["robustness_epochs"] == [2]
    assert robustness_epochs(study, JobOptions(smoke=True, asha=False)) == ()
