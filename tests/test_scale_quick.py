"""The scale benchmark's quick mode (issue 25): 100 sleeping trials on a 3-node local Ray
cluster, through bare Tune and through the project's runner, writer and report. Its own test,
left out of the default run (about two minutes): `python -m pytest -m scale`."""

from __future__ import annotations

import json

import pytest

from .test_benchmark_records import _benchmark


@pytest.mark.scale
def test_the_quick_mode_runs_both_cases_to_the_end(tmp_path):
    out = tmp_path / "quick.json"
    rows = _benchmark("scale").main(["--quick", "--json", str(out)])
    assert json.loads(out.read_text()) == rows
    by = {r["case"]: r for r in rows}
    assert set(by) == {"bare", "project"}
    for r in rows:
        # every trial finished, on the 3 x 4 logical CPUs, each epoch's result processed
        assert (r["trials"], r["finished"], r["nodes"], r["cpus_per_node"]) == (100, 100, 3, 4)
        assert r["ideal_s"] == pytest.approx(100 * 2 * 0.2 / 12, abs=0.1)
        assert r["fit_s"] >= r["ideal_s"]
        assert r["results_per_s"] == pytest.approx(200 / r["fit_s"], rel=0.02)
        # two 423 KB checkpoints kept per trial at least
        assert r["folder_mb"] > 100 * 2 * 0.4
        assert r["driver_cpu_s"] > 0 and r["driver_peak_rss_mb"] > 0
        # the trials report the corruption cells as core.trainable does; Tune's state is read
        assert r["cells"] == "packed" and r["state_mb"] > 0
    # only the project writes the tables and builds the report, and says how long each took
    assert by["bare"]["write_s"] is None and by["bare"]["report_s"] is None
    assert by["project"]["write_s"] > 0 and by["project"]["report_s"] > 0
    page, mb = by["project"]["largest_page_mb"]  # the report's largest page: (name, MiB)
    assert page.endswith(".html") and mb > 0
