"""What a new user hits: every option or config that cannot run is one line, exit 2, before Ray
starts (or, for what only the cluster can tell, before any trial), and earlier results stay as
they were; a study whose trials error exits 1 and names each distinct error once.

Each refusal runs the study script as a researcher would (a subprocess, PYTHONPATH inherited)
with `RAY_TMPDIR` pointing at a folder of the test's own: Ray writes its session folder there
when it starts, so an empty folder afterwards shows that no Ray started (other studies may run
Ray on the same machine at the same time; /tmp/ray is theirs).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tune_jobs.errors import JobError
from tune_jobs.options import MAX_SEEDS, JobOptions
from tune_jobs.preflight import local_cpus
from tune_jobs.study import Study

from .conftest import REPO

RAY_BANNER = "Started a local Ray instance"


@pytest.fixture
def storage(tmp_path) -> Path:
    """A storage root holding an earlier experiment (fabricated files: their bytes are what
    the tests compare)."""
    root = tmp_path / "results"
    earlier = root / "earlier"
    (earlier / "train_00000").mkdir(parents=True)
    (earlier / "results.parquet").write_bytes(b"PAR1 earlier results")
    (earlier / "study.json").write_text('{"study": "alpha_gamma"}')
    (earlier / "train_00000" / "result.json").write_text('{"epoch": 1}\n')
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run_script(tmp_path: Path, script: str, *args: str, prefix: tuple[str, ...] = ()):
    """`python tune_jobs/<script> args`, Ray's temp folder in the test's own folder."""
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir(exist_ok=True)
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    start = time.monotonic()
    r = subprocess.run(
        [*prefix, sys.executable, f"tune_jobs/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return r, time.monotonic() - start, ray_tmp


def assert_refused(tmp_path, storage, args, starts, script="alpha_gamma.py", prefix=()):
    """Exit 2, exactly one line on stderr starting `error: <starts>`, no Ray, no experiment
    folder, the earlier experiment byte-identical. Returns the line and the seconds taken."""
    before = snapshot(storage)
    r, seconds, ray_tmp = run_script(tmp_path, script, *args, prefix=prefix)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {starts}"), lines[0]
    assert RAY_BANNER not in r.stdout + r.stderr and not any(ray_tmp.iterdir())
    assert sorted(p.name for p in storage.iterdir()) == ["earlier"]  # no new experiment
    assert snapshot(storage) == before
    return lines[0], seconds


def smoke_args(storage: Path, cifar10_dir: Path) -> list[str]:
    return ["--smoke", "--data-dir", str(cifar10_dir), "--storage-path", str(storage)]


# ----------------------------------------------------------------------------------------
# 2. a config that can never run here
# ----------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device=cuda runs")
def test_device_cuda_without_cuda_is_refused_before_ray(tmp_path, storage, cifar10_dir):
    line, _ = assert_refused(
        tmp_path,
        storage,
        [*smoke_args(storage, cifar10_dir), "--set", "device=cuda"],
        "--set='device=cuda': torch sees no CUDA device on this machine; allowed: device=auto",
    )
    assert "--address" in line  # where it could run


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device=cuda runs")
def test_core_train_device_cuda_without_cuda_is_one_line():
    r = subprocess.run(
        [sys.executable, "-m", "core.train", "--device", "cuda", "--arch", "simple_cnn"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "error: device='cuda': torch sees no CUDA device here; allowed: 'auto' or 'cpu'"
    ]


# ----------------------------------------------------------------------------------------
# 3. refused before Ray, naming the option
# ----------------------------------------------------------------------------------------
STUDY_SCRIPTS = ("alpha_gamma.py", "ensemble_size.py", "optimizers.py", "sharing.py", "search.py")


@pytest.mark.parametrize("script", STUDY_SCRIPTS)
def test_a_preset_or_dataset_not_offered_is_one_line_in_every_script(
    tmp_path, storage, cifar10_dir, script
):
    """A study script builds its grid from the preset (`SWEEPS[preset]`): a preset it does not
    offer is refused before that, by the one list of choices, not a KeyError traceback."""
    base = ["--data-dir", str(cifar10_dir), "--storage-path", str(storage)]
    assert_refused(
        tmp_path,
        storage,
        [*base, "--preset", "gpu"],
        "Invalid value for '--preset': 'gpu' is not one of 'full', 'cpu', 'learn', 'smoke'.",
        script=script,
    )
    assert_refused(
        tmp_path,
        storage,
        [*base, "--smoke", "--dataset", "mnist"],
        "Invalid value for '--dataset': 'mnist' is not one of 'cifar10', 'cifar20', 'imagefolder'.",
        script=script,
    )


def test_choices_are_checked_from_their_one_declaration_without_the_command_line():
    with pytest.raises(JobError, match=r"^--preset='gpu' is not allowed; choose one of \['full'"):
        JobOptions(preset="gpu").check()
    with pytest.raises(JobError, match=r"^--dataset='mnist' is not allowed; choose one of"):
        JobOptions(dataset="mnist").check()


@pytest.mark.parametrize(
    "name",
    ["../../escaped", "..", ".", "a/b", "/abs", "with space", ".hidden", "", "x" * 256, "a\\b"],
)
def test_a_name_that_is_not_one_folder_is_refused_and_nothing_is_written_outside(
    tmp_path, storage, cifar10_dir, name
):
    """--name is one folder inside --storage-path: a path that would leave it (tried: the
    experiment landed two folders above it) is refused before anything is written anywhere."""
    nested = tmp_path / "deep" / "er"
    nested.mkdir(parents=True)
    outside = snapshot(tmp_path)
    args = [*smoke_args(nested, cifar10_dir), "--name", name]
    assert_refused(tmp_path, storage, args, f"--name={name!r}: must be one folder name inside")
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("raytmp")}
    assert after == outside
    assert not any(nested.iterdir())


def test_an_ordinary_name_is_taken():
    for name in ("alpha_gamma", "ag-2026.12.02", "run+seed=3", "v1@cluster"):
        JobOptions(name=name).check()


def test_storage_path_that_is_a_file_or_under_one_is_refused(tmp_path, storage, cifar10_dir):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for path, found in ((a_file, "is "), (a_file / "sub", "is under ")):
        args = [*smoke_args(storage, cifar10_dir), "--storage-path", str(path)]
        line, _ = assert_refused(
            tmp_path, storage, args, f"--storage-path={str(path)!r}: {found}{str(a_file)!r}"
        )
        assert line.endswith(
            "a file, not a folder; allowed: a writable folder, s3://bucket/path or gs://bucket/path"
        )
        assert a_file.read_text() == "not a folder"


def _read_only_mount_works(folder: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {folder} {folder} && true"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_read_only_storage_path_is_refused(tmp_path, storage, cifar10_dir):
    """A read-only file system, for real: root passes every permission-bit check, so the
    folder is bind-mounted read-only in a private mount namespace (`unshare -m`)."""
    if shutil.which("unshare") is None or not _read_only_mount_works(storage):
        pytest.skip("needs `unshare -m` and mount (root in a namespace) for a read-only mount")
    target = storage / "new_root"
    script = f'mount --bind -o ro {storage} {storage} && exec "$@"'
    line, _ = assert_refused(
        tmp_path,
        storage,
        [*smoke_args(storage, cifar10_dir), "--storage-path", str(target)],
        f"--storage-path={str(target)!r}: cannot create a folder there",
        prefix=("unshare", "-m", "sh", "-c", script, "sh"),
    )
    assert "Read-only file system" in line and "nearest existing folder" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_fails_within_seconds(tmp_path, storage, cifar10_dir, scheme):
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    args = [*smoke_args(storage, cifar10_dir), "--address", address]
    line, seconds = assert_refused(
        tmp_path, storage, args, f"--address={address!r}: cannot connect to 127.0.0.1"
    )
    assert "Connection refused" in line and "allowed: 'auto' with a running cluster" in line
    assert seconds < 30  # Ray's own retries take a minute; this is the script's start-up


def test_asha_with_a_multi_objective_search_is_refused(tmp_path, storage, cifar10_dir):
    args = [*smoke_args(storage, cifar10_dir), "--objectives", "accuracy,params", "--asha"]
    assert_refused(tmp_path, storage, args, "--asha=True: ASHA ranks trials", script="search.py")


def test_an_unknown_sampler_is_refused_before_ray_starts(tmp_path, storage, cifar10_dir):
    args = [*smoke_args(storage, cifar10_dir), "--sampler", "cmaes"]
    msg = "--sampler='cmaes': allowed auto, tpe, nsga2, random"
    assert_refused(tmp_path, storage, args, msg, script="search.py")


def test_start_ray_words_a_missing_cluster_in_one_line(monkeypatch):
    import ray

    from tune_jobs import resources

    def no_cluster(**_):
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify ...")

    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(JobError) as err:
        resources.start_ray("auto")
    assert str(err.value) == (
        "--address='auto': Could not find any running Ray instance.; allowed: 'auto' with a "
        "running cluster, host:port of a head node (ray://host:port for Ray Client), or no "
        "--address for a local Ray"
    )


# ----------------------------------------------------------------------------------------
# 4. requests that would wait for ever, and absurd numbers
# ----------------------------------------------------------------------------------------
def test_more_cpus_per_trial_than_this_machine_is_refused(tmp_path, storage, cifar10_dir):
    n = local_cpus() + 2
    line, _ = assert_refused(
        tmp_path,
        storage,
        [*smoke_args(storage, cifar10_dir), "--cpus-per-trial", str(n)],
        f"--cpus-per-trial={float(n)!r}: this machine has at most {local_cpus()} CPU(s)",
    )
    assert line.endswith(f"allowed: a value <= {local_cpus()}")


@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (["--epochs", "99999999999999999999"], "--epochs=99999999999999999999: must be an integer"),
        (["--seeds", str(MAX_SEEDS + 1)], f"--seeds={MAX_SEEDS + 1}: must be an integer in"),
        (["--set", "ensemble_size=100000"], "ensemble_size=100000: must be an integer in [1, 64]"),
        (["--set", "batch_size=99999999999999999999"], "batch_size=99999999999999999999"),
        (["--set", "lr=1e999"], "lr=inf: must be in (0.0, inf]"),
        (["--max-failures", "-1"], "--max-failures=-1: must be an integer in [0, 100]"),
    ],
)
def test_absurd_numbers_are_refused(tmp_path, storage, cifar10_dir, args, starts):
    assert_refused(tmp_path, storage, [*smoke_args(storage, cifar10_dir), *args], starts)


def test_cluster_check_finds_a_node_for_each_request():
    from tune_jobs.resources import check_cluster

    nodes = {
        "head": {"CPU": 0.0, "GPU": 0.0},
        "node type gpu": {"CPU": 48.0, "GPU": 4.0},
        "cpu-box": {"CPU": 96.0, "GPU": 0.0},
    }
    study = Study("s", {"epochs": 1})
    assert check_cluster(study, 8, None, nodes) == 1.0  # default: a GPU, since some node has
    assert check_cluster(study, 96, 0, nodes) == 0.0
    with pytest.raises(JobError, match=r"--cpus-per-trial=200: any node has at most 96 CPU"):
        check_cluster(study, 200, None, nodes)
    with pytest.raises(JobError, match=r"--gpus-per-trial=8: any node has at most 4 GPU"):
        check_cluster(study, 1, 8, nodes)
    with pytest.raises(JobError, match=r"no node has 64 CPU\(s\) and 1 GPU\(s\) together"):
        check_cluster(study, 64, 1, nodes)
    cuda = Study("s", {"epochs": 1, "device": "cuda"})
    cpu_only = {"head": {"CPU": 2.0, "GPU": 0.0}}
    with pytest.raises(JobError, match=r"--set='device=cuda': no live node or launchable"):
        check_cluster(cuda, 1, None, cpu_only)
    with pytest.raises(JobError, match=r"--gpus-per-trial 0 gives a trial no GPU"):
        check_cluster(cuda, 1, 0, nodes)


# ----------------------------------------------------------------------------------------
# 5. one source of truth for the data
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "use"),
    [
        ("dataset=cifar20", "--dataset cifar20"),
        ("data_dir=/somewhere", "--data-dir /somewhere"),
        ("epochs=3", "--epochs 3"),
        ("num_threads=2", "--cpus-per-trial 2"),
    ],
)
def test_set_of_a_field_with_its_own_option_names_the_option(
    tmp_path, storage, cifar10_dir, item, use
):
    line, _ = assert_refused(
        tmp_path,
        storage,
        [*smoke_args(storage, cifar10_dir), "--set", item],
        f"--set={item!r}: {item.split('=')[0]!r} has its own option",
    )
    assert f"allowed: {use}" in line


def test_every_trial_names_the_data_the_driver_loads():
    from tune_jobs.study import check_study

    opts = JobOptions(dataset="cifar10")
    check_study(Study("s", opts.fixed_config(epochs=1)), opts)
    sneaky = Study("s", {**opts.fixed_config(epochs=1), "dataset": "cifar20"})
    with pytest.raises(JobError, match=r"dataset='cifar20': .* allowed: 'cifar10', from --dataset"):
        check_study(sneaky, opts)


# ----------------------------------------------------------------------------------------
# 2. a study whose trials error: tables written, each error once, exit 1
# ----------------------------------------------------------------------------------------
@pytest.fixture
def tiny_images(tmp_path) -> Path:
    """A real image folder the driver loads fine, of 2x2 images: simple_cnn needs 8x8, which
    the trial finds when it builds the model (the driver does not build models)."""
    from PIL import Image

    root = tmp_path / "tiny"
    for split, n in (("train", 10), ("test", 2)):  # 10 per class: a 10% validation split
        for c, colour in (("a", (200, 10, 10)), ("b", (10, 10, 200))):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (2, 2), colour).save(root / split / c / f"{i}.png")
    return root


@pytest.mark.slow
def test_errored_trials_exit_1_with_each_error_once(tmp_path, storage, tiny_images):
    before = snapshot(storage)
    args = [
        "--smoke",
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(tiny_images),
        "--set",
        "train_subset=none",
        "--set",
        "test_subset=none",
        "--epochs",
        "1",
        "--max-failures",
        "1",
        "--storage-path",
        str(storage),
    ]
    r = subprocess.run(
        [sys.executable, "tune_jobs/alpha_gamma.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    # the cost estimate cannot time this model: it says so in one line, and the trials run
    assert "cost: not estimated (ConfigError: simple_cnn: image size (2, 2)" in r.stdout
    exp = storage / "alpha_gamma_smoke"
    # The errors are data: both tables are written, every trial a row with its error.
    results = pd.read_parquet(exp / "results.parquet")
    assert len(results) == 4 and (results["status"] == "ERROR").all()
    message = "ConfigError: simple_cnn: image size (2, 2) is too small; need H, W >= 8"
    assert (results["error"] == message).all()
    assert (exp / "history.parquet").exists()
    assert f"results: {exp / 'results.parquet'}" in r.stdout
    assert "report:" not in r.stdout
    # Each distinct error once, with a count and one trial's traceback file.
    tail = r.stderr[r.stderr.index("error: study alpha_gamma_smoke") :].splitlines()
    assert tail[0] == "error: study alpha_gamma_smoke: 4 of 4 trial(s) errored"
    assert tail[1] == f"  4 trial(s): {message}"
    assert tail[2].startswith("    traceback: ") and len(tail) == 3
    error_file = Path(tail[2].removeprefix("    traceback: "))
    assert error_file.parent.parent == exp
    text = error_file.read_text()  # Ray's traceback of each attempt (retried once)
    assert "Failure # 2" in text and 'File "' in text and "raise ConfigError(" in text
    # 4 trials, each tried twice: the tracebacks stay in the error files, not the console.
    console = r.stdout + r.stderr
    assert "raise ConfigError(" not in console and "ray::ImplicitFunc" not in console
    assert 'File "' not in console and "Traceback" not in console
    assert snapshot(storage / "earlier") == {
        k.removeprefix("earlier/"): v for k, v in before.items()
    }
