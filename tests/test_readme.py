"""README opens with the two commands, and CI runs the second one verbatim."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text(), re.S)


def test_readme_opens_with_job_and_test_commands():
    job, test = readme_commands()[:2]
    assert "tune_jobs/alpha_gamma.py --smoke" in job and job.startswith("pip install")
    assert test.startswith("pip install") and "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    test = readme_commands()[1]
    assert test in [line.strip() for line in ci if not line.strip().startswith("#")]
