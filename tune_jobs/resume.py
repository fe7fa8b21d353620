"""What `--resume` compares, without Ray: the options that define a study (recorded in
study.json when it starts), each difference between the saved ones and the given ones named
in one line, and the command line that continues a study.

The guards that need Ray (an experiment to resume, a killed run's actors, a finished study)
are in `tune_jobs.resume_guard`: kept apart so that the study record (`tune_jobs.record`),
which holds the resume command, is written and read without Ray, like the options.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.columns import STUDY_OPTIONS, STUDY_SPACE
from core.config import parse_field
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions, flag_of, set_items
from tune_jobs.preflight import is_uri
from tune_jobs.study import Study

# The JobOptions fields that change what a study computes: recorded when it starts and compared
# on --resume. The others (resources, concurrency, retries, address, storage, name, where the
# trials are also logged: --mlflow-uri) may differ.
DEFINING_OPTIONS = (
    "preset",  # --smoke is --preset smoke
    "dataset",
    "data_dir",
    "epochs",
    "seeds",
    "asha",
    "grace_period",
    "reduction_factor",
    "overrides",
)
# Space keys that follow from options allowed to differ on --resume (--cpus-per-trial).
RESOURCE_KEYS = ("num_threads",)


def json_round_trip(value: Any) -> Any:
    """`value` as study.json holds it once read back (tuples become lists), so that what is
    given compares equal to what was saved."""
    return json.loads(json.dumps(value))


def defining_options(study: Study, opts: JobOptions) -> dict[str, Any]:
    """Flag -> value of every option that defines the study, the script's own included;
    `--data-dir` as an absolute path (a relative one may be given from another folder)."""
    out: dict[str, Any] = {}
    for name in DEFINING_OPTIONS:
        value = getattr(opts, name)
        if name == "data_dir" and value is not None and not is_uri(value):
            value = str(Path(value).expanduser().resolve())
        out[flag_of(name)] = list(value) if name == "overrides" else value
    return json_round_trip({**out, **study.script_options})


def _shown(flag: str, value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return flag if value else "--no-" + flag.removeprefix("--")
    return f"{flag} {value}"


def _set_values(items: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """`--set` items by key: (the item as given, its value typed like the field)."""
    out = {}
    for key, item, raw in set_items(items):
        try:
            value = parse_field(key, raw)
        except Exception:  # a saved item the current code no longer reads: compare the text
            value = raw
        out[key] = (item, value)
    return out


def option_differences(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Each defining option whose value differs from the saved study's, as
    `--epochs 4 (saved: not set)`, `--set lr=0.5 (saved: not set)`."""
    out = []
    for flag in dict.fromkeys([*given, *saved]):
        now, then = given.get(flag), saved.get(flag)
        if flag == flag_of("overrides"):
            now_set, then_set = _set_values(now or ()), _set_values(then or ())
            for key in dict.fromkeys([*now_set, *then_set]):
                a, b = now_set.get(key), then_set.get(key)
                if a is None or b is None or a[1] != b[1]:
                    shown_now = f"{flag} {a[0]}" if a else f"{flag} {key}=... not given"
                    out.append(f"{shown_now} (saved: {f'{flag} {b[0]}' if b else 'not set'})")
        elif now != then:
            out.append(f"{_shown(flag, now)} (saved: {_shown(flag, then)})")
    return out


def saved_options(saved: dict[str, Any]) -> dict[str, Any] | None:
    """The defining options of a saved record (flag -> value), None for a study recorded
    before options were; a record from before presets says --smoke, now --preset."""
    if STUDY_OPTIONS not in saved:
        return None
    then = dict(saved[STUDY_OPTIONS])
    if "--smoke" in then:  # recorded before presets: --smoke was the only one
        then.setdefault(flag_of("preset"), "smoke" if then.pop("--smoke") else "full")
    return then


def space_differences(saved: dict[str, Any], study: Study) -> list[str]:
    """The saved parameter space against the study's, resources aside: [] when equal, else
    one line naming the keys that differ."""
    then = {k: v for k, v in saved.get(STUDY_SPACE, {}).items() if k not in RESOURCE_KEYS}
    now = {k: v for k, v in json_round_trip(study.space).items() if k not in RESOURCE_KEYS}
    keys = sorted(k for k in {*then, *now} if then.get(k) != now.get(k))
    return [f"the parameter space differs in {keys} (has the study's code changed?)"] * bool(keys)


def check_resume(saved: dict[str, Any], study: Study, opts: JobOptions) -> None:
    """`--resume` continues the study it was started as: options that change what is computed
    must be the ones saved (each difference is named), and so must the parameter space."""
    then = saved_options(saved)
    if then is None:  # a study recorded before options were: nothing to compare
        return
    diffs = option_differences(then, defining_options(study, opts))
    if not diffs:
        diffs = space_differences(saved, study)
    if diffs:
        raise JobError(
            "--resume: options differ from the saved study: "
            + ", ".join(diffs)
            + "; resume with the same options, or start a new --name"
        )


def resume_command(study: Study, opts: JobOptions) -> str:
    """The command line that continues the study: its script, the options that define it
    (those not at their default), --resume, --name and --storage-path."""
    defaults = {flag_of(f.name): f.default for f in dataclasses.fields(JobOptions)}
    args = ["python", f"tune_jobs/{study.name}.py"]
    for flag, value in defining_options(study, opts).items():
        if flag == flag_of("overrides"):
            args += [a for item in value for a in (flag, item)]
        elif isinstance(value, bool):
            if value != defaults.get(flag):
                args.append(_shown(flag, value))
        elif value is not None and value != defaults.get(flag):
            args += [flag, str(value)]
    args += ["--resume", "--name", opts.experiment_name, "--storage-path", opts.storage_root()]
    return shlex.join(args)
