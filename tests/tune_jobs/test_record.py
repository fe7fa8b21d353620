"""study.json: what the runner's record says about the study and what produced it."""

import subprocess
from pathlib import Path

from tune_jobs.options import JobOptions
from tune_jobs.record import study_record

REPO = Path(__file__).resolve().parents[2]


def test_study_json_records_what_produced_the_study(tmp_path):
    """The runner's record path: save_record writes the provenance it is given into
    study.json (tune_jobs.record cannot compute it: core.provenance asks torch about CUDA)."""
    import json

    from core.columns import PROV_COMMIT, PROV_CPU, PROV_VERSIONS, PROVENANCE, STUDY_STATE
    from core.provenance import provenance
    from tune_jobs import alpha_gamma
    from tune_jobs.runner import save_record

    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    study = alpha_gamma.make_study(opts)
    produced_by = provenance()
    assert study_record(study, opts, **{PROVENANCE: produced_by})[PROVENANCE] == produced_by
    assert PROVENANCE not in study_record(study, opts)  # only what the caller passes
    exp = tmp_path / "x"
    exp.mkdir()
    save_record(exp, str(exp), study, opts, "running", **{PROVENANCE: produced_by})
    saved = json.loads((exp / "study.json").read_text())
    assert saved[STUDY_STATE] == "running" and saved[PROVENANCE] == produced_by
    assert saved[PROVENANCE][PROV_VERSIONS]["ray"] and saved[PROVENANCE][PROV_CPU]
    if (REPO / ".git").exists():  # this checkout: its commit
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert saved[PROVENANCE][PROV_COMMIT] == head
