"""What a failed step or run says to a person: the error our code raised, not Dagster's.

Dagster records a step's error as `DagsterExecutionStepExecutionError: Error occurred while
executing op "repo_files":` with the exception the asset raised as its cause, and prints
the whole chain with every stack (over a hundred lines). `headline` walks past Dagster's
wrappers to that exception and says it in one line, class name first; `full_trace` is the
whole chain, for `repo-index index --verbose`.
"""

from __future__ import annotations

from dagster_shared.error import SerializableErrorInfo


def _is_dagster_wrapper(error: SerializableErrorInfo) -> bool:
    # A Dagster exception class around another one (the message starts with its module path).
    # One without a cause (dg.Failure raised by an asset) is the error itself.
    return error.message.startswith("dagster") and (error.cause or error.context) is not None


def _text(error: SerializableErrorInfo) -> str:
    """The exception's message without its module path: `SourceError: path ...`."""
    message = error.message.strip()
    name = error.cls_name or ""
    qualified, sep, rest = message.partition(": ")
    if name and qualified.split(".")[-1] == name and " " not in qualified:
        return f"{name}: {rest.strip()}" if sep else name
    return message


def _causes(error: SerializableErrorInfo):
    while error is not None:
        yield error
        error = error.cause or error.context


def user_error(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The first error of the chain that is not a Dagster wrapper: the one our code raised."""
    while _is_dagster_wrapper(error):
        error = error.cause or error.context
    return error


def headline(error: SerializableErrorInfo | None, fallback: str = "see the run in the UI") -> str:
    """One line (or the message's own lines) naming the error our code raised, and what
    caused it when its message does not already say so."""
    if error is None:
        return fallback
    chain = list(_causes(user_error(error)))
    said = _text(chain[0])
    for cause in chain[1:]:
        text = _text(cause)
        if text.partition(": ")[2].strip() not in said:
            said += f" (caused by {text})"
    return said


def full_trace(error: SerializableErrorInfo | None) -> str:
    """Every error of the chain with its stack, as Dagster records it."""
    return error.to_string().rstrip() if error is not None else ""
