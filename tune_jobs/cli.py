"""The command line of every study script: one option per `JobOptions` field, plus the
script's own (`option`), then the checks, then the run.

Bad options and configs print one line, `error: ...`, and exit with status 2 before Ray starts
(or, for what only a running cluster can tell, before any trial starts); a study that ran with
errored trials exits with 1 after writing its files; an interrupted study exits with 130
(resume it with `--resume`); `--resume` of a finished study says so in one line and exits with
0, starting nothing (`--extend` adds trials to it: `tune_jobs.extend`). This module stays free
of Ray and torch, so that importing a study script loads neither: the runner is imported only
to run.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

import click

from core.cli import Command, help_text, refuse, strip_none
from core.errors import ConfigError, DataError
from tune_jobs.errors import JobError, NothingToResume, StudyFailed, StudyInterrupted
from tune_jobs.options import PRESETS, JobOptions
from tune_jobs.study import Study, check_overrides_not_swept, check_space

__all__ = ["cli", "command", "job_option_params", "option"]


def job_option_params() -> list[click.Option]:
    """One click option per JobOptions field: `--field-name` (or the field's `flag`), its
    type from the annotation, its default and help from the field."""
    hints = typing.get_type_hints(JobOptions)
    params = []
    for f in dataclasses.fields(JobOptions):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        kind = strip_none(hints[f.name])
        settings: dict[str, Any] = {"default": f.default, "help": f.metadata["help"]}
        if "choices" in f.metadata:  # click offers them in --help and refuses any other value
            decls = [flag, f.name]
            settings["type"] = click.Choice(f.metadata["choices"])
        elif kind is bool:
            decls = [f"{flag}/--no-{flag.removeprefix('--')}", f.name]
        elif typing.get_origin(kind) is tuple:  # tuple[str, ...]: a repeatable option
            decls = [flag, f.name]
            settings |= {"type": typing.get_args(kind)[0], "multiple": True}
        else:
            decls = [flag, f.name]
            settings["type"] = kind
        params.append(click.Option(decls, show_default=f.default not in (None, ()), **settings))
    return params


def option(name: str, default: Any, value_type: type, help: str) -> click.Option:
    """A script-specific option for `cli(extra=[...])`: `--name-with-dashes`, passed to the
    script's `make_study` as the keyword `name`."""
    flag = "--" + name.replace("_", "-")
    return click.Option(
        [flag, name], default=default, type=value_type, help=help, show_default=True
    )


def command(
    make_study: Callable[..., Study],
    extra: Sequence[click.Option] = (),
    doc: str | None = None,
) -> click.Command:
    """The study script's command: `make_study(opts, **extra_values)` returns the Study."""
    extra_names = {p.name for p in extra}

    def run(**values: Any) -> None:
        opts = JobOptions(**{k: v for k, v in values.items() if k not in extra_names})
        try:
            opts.check()  # first: a script builds its space from the options (SWEEPS[preset])
            study = _make_study(make_study, opts, {k: values[k] for k in extra_names}, extra)
            if opts.name is None:
                opts.name = study.name + ("" if opts.preset == "full" else f"_{opts.preset}")
            check_space(study, opts)
            from tune_jobs.runner import run_study

            run_study(study, opts)
        except (JobError, ConfigError, DataError, FileNotFoundError) as e:
            refuse(str(e))
        except StudyFailed as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except StudyInterrupted as e:
            click.echo(str(e), err=True)
            sys.exit(130)
        except NothingToResume as e:
            click.echo(str(e))
            sys.exit(0)

    return Command(
        name=None,
        callback=run,
        params=[*job_option_params(), *extra],
        help=help_text(doc),
        sections={"Presets (--preset)": list(PRESETS.items())},
    )


def _make_study(
    make_study: Callable[..., Study],
    opts: JobOptions,
    extra_values: dict[str, Any],
    extra: Sequence[click.Option],
) -> Study:
    """The study, with the script's own options recorded in it (flag -> value).

    A `--set` value that does not parse stops `make_study` (the space is built from it); if it
    sets a field the study sweeps, that is the refusal to give, so the sweep is looked up in
    the study built without `--set`."""
    try:
        study = make_study(opts, **extra_values)
    except ConfigError:
        if opts.overrides:
            bare = dataclasses.replace(opts, overrides=())
            check_overrides_not_swept(make_study(bare, **extra_values), opts)
        raise
    study.script_options = {p.opts[0]: extra_values[p.name] for p in extra if p.name}
    return study


def cli(
    make_study: Callable[..., Study],
    extra: Sequence[click.Option] = (),
    doc: str | None = None,
) -> None:
    """Run a study script's command line (the script's docstring as `doc` heads `--help`)."""
    command(make_study, extra, doc).main()
