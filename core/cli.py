"""The command-line conventions of every command of the project (`python -m core.train` and the
study scripts, `tune_jobs.cli`), in one place. Torch-free and Ray-free: it is click only.

* options are click options; a misspelled one is refused with click's suggestion
  (`No such option '--epoch'. Did you mean '--epochs'?`);
* every refusal, click's own (a typo, a value of the wrong type) or the command's (a value
  not allowed), is one line on stderr, `error: ...`, with exit status 2 (`Command`, `refuse`);
* help texts are click's, wrapped to the terminal (at most `HELP_WIDTH` columns); example
  command lines of a docstring stay whole (`help_text`), and a list of named entries is a
  definition list that click wraps (`Command(sections=...)`).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import click

__all__ = ["HELP_WIDTH", "Command", "help_text", "refuse", "strip_none"]

HELP_WIDTH = 100  # the widest help; a narrower terminal gets its own width


def refuse(message: str) -> NoReturn:
    """The one way a command refuses: `error: <message>` on stderr, exit status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class Command(click.Command):
    """A click command whose usage errors (an unknown option, a value click cannot convert)
    are one line, `error: ...`, like every other refusal (click prints three: usage, a hint and
    the error), and whose `sections` (title -> [(name, text)]) follow the options in `--help`
    as definition lists wrapped to the terminal."""

    def __init__(
        self, *args: Any, sections: Mapping[str, Sequence[tuple[str, str]]] = (), **kwargs: Any
    ):
        kwargs.setdefault("context_settings", {"max_content_width": HELP_WIDTH})
        super().__init__(*args, **kwargs)
        self.sections = dict(sections)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            refuse(f"{e.format_message()} (see --help)")
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, rows in self.sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


def strip_none(hint: Any) -> Any:
    """`int | None` -> `int`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def help_text(doc: str | None) -> str | None:
    """A docstring as a command's help: click rewraps its paragraphs, but a paragraph of
    example command lines (starting `python `) stays as written, to be copied."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join("\b\n" + p if p.lstrip().startswith("python ") else p for p in paragraphs)
