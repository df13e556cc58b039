"""The one error base of the product: a message for a human and the exit status of the command.

Every layer raises a :class:`TriageError` (or a subclass) for a problem the user can act on;
``cli.py`` maps it the same way for every subcommand: ``complaint-triage <command>: <message>``
on stderr, no traceback, exit status :attr:`TriageError.exit_code`. Exit statuses:

====  ==========================================================================================
1     the run failed part-way (an input that stops parsing, a write that fails)
2     a user mistake found before any work: arguments, settings, priority config, bundle, input
3     ``serve`` could not start listening (port in use, lifespan failure)
4     ``score`` finished and wrote its output, but more than ``--max-error-rate`` of the rows are errors
130   interrupted (Ctrl-C / SIGINT); ``score`` can be resumed by re-running the same command
====  ==========================================================================================
"""

from __future__ import annotations


class TriageError(Exception):
    """A problem the user can act on; ``str(exc)`` says what and, where it can, how to fix it."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(TriageError):
    """A mistake in what the user asked for (arguments, settings, config files, bundle, input path)."""

    exit_code = 2


class TooManyErrors(TriageError):
    """``score`` wrote its output, but most rows (over ``--max-error-rate``) are error records."""

    exit_code = 4


class Interrupted(TriageError):
    """Stopped by Ctrl-C / SIGINT (or SIGTERM where a command turns it into one)."""

    exit_code = 130
