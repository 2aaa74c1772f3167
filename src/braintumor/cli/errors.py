"""Turn the errors a user can fix into one red line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from braintumor.errors import BrainTumorError

USER_ERROR_EXIT_CODE = 2

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _stderr() -> Console:
    # Built per call so that test runners that swap sys.stderr see the message.
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Catch :class:`BrainTumorError`, print ``error: <message>`` and exit with code 2.

    Anything else is a bug and propagates with its traceback.
    """
    try:
        yield
    except BrainTumorError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        # Text, not markup: messages hold paths and lists whose brackets rich would eat.
        _stderr().print(Text.assemble(("error:", "bold red"), " ", message))
        raise typer.Exit(USER_ERROR_EXIT_CODE) from error


def run_cli(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a Typer command so that user errors end it as :func:`user_errors` does."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper
