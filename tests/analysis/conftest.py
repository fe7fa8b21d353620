"""Shared, expensive fixtures: fabricated frames and one built alpha/gamma report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import build_report
from analysis.tidy import tidy_history, tidy_results
from tests.analysis import fakes


@pytest.fixture(scope="session")
def ag_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Full 9 x 9 alpha/gamma grid, 3 seeds, with the special cells of fakes."""
    return fakes.alpha_gamma_frames()


@pytest.fixture(scope="session")
def ag_results(ag_frames) -> pd.DataFrame:
    return tidy_results(ag_frames[0])


@pytest.fixture(scope="session")
def ag_history(ag_frames) -> pd.DataFrame:
    return tidy_history(ag_frames[1], ag_frames[0])


@pytest.fixture(scope="session")
def ag_report(tmp_path_factory, ag_frames) -> Path:
    """An alpha/gamma experiment folder (with study.json) and its report; returns index.html.
    Tests must not modify it."""
    exp = tmp_path_factory.mktemp("exp") / "ag_full"
    fakes.write_experiment(exp, *ag_frames, study="alpha_gamma")
    return build_report(exp)
