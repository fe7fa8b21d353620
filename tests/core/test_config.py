"""TrialConfig: every bad value is one clear error naming field, value and what is allowed."""

import pytest

from core.config import ConfigError, TrialConfig


def test_defaults_validate_and_round_trip():
    cfg = TrialConfig.from_dict({})
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"alpha": 1.5}, r"alpha=1\.5: fast-weight init must be a number in \[-1, 1\]"),
        ({"gamma": -1.01}, r"gamma=-1\.01"),
        ({"ensemble_size": 0}, r"ensemble_size=0: must be an integer in \[1, 64\]"),
        ({"ensemble": "single", "ensemble_size": 4}, r"ensemble_size=4: ensemble 'single'"),
        ({"ensemble": "batch", "ensemble_size": 1}, r"needs at least 2 members"),
        ({"arch": "resnet9"}, r"arch='resnet9' is not allowed; choose one of \['simple_cnn'"),
        ({"sharing_network": "middle"}, r"sharing_network='middle' is not allowed"),
        ({"sharing_ensemble": "some"}, r"sharing_ensemble='some' is not allowed"),
        ({"optimizer": "adamw"}, r"optimizer='adamw' is not allowed; choose one of \['adam'"),
        ({"dataset": "mnist"}, r"dataset='mnist' is not allowed"),
        ({"lr": 0}, r"lr=0: must be in \(0"),
        ({"batch_size": 0}, r"batch_size=0"),
        ({"patience": 5}, r"patience=5: early stopping watches the validation loss"),
        (
            {"ensemble": "single", "ensemble_size": 1, "sharing_ensemble": "all"},
            r"sharing_ensemble='all': a 'single' network has no members",
        ),
        ({"dataset": "imagefolder"}, r"data_dir=None: dataset 'imagefolder' needs data_dir"),
        ({"batchsize": 64}, r"unknown config field\(s\) \['batchsize'\]"),
        ({"ensemble": "deep", "norm": "member"}, r"norm='member'"),
    ],
)
def test_bad_values_are_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrialConfig.from_dict(changes)


def test_bundles_set_several_fields_and_conflicts_are_refused():
    cfg = TrialConfig.from_dict({"model": {"ensemble": "single", "ensemble_size": 1}, "lr": 0.1})
    assert (cfg.ensemble, cfg.ensemble_size, cfg.lr) == ("single", 1, 0.1)
    with pytest.raises(ConfigError, match="ensemble_size: set twice"):
        TrialConfig.from_dict({"ensemble_size": 4, "model": {"ensemble_size": 8}})
