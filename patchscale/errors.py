"""Exceptions that the CLI turns into one-line messages instead of tracebacks."""


class UserError(Exception):
    """Bad input from the user (config, CLI argument, data, results file): exit code 2."""


class TrainingError(Exception):
    """A run that cannot go on (for example a non-finite loss): exit code 1."""


class Preempted(Exception):
    """SIGTERM (preemption) arrived; a checkpoint was saved and rerunning resumes: exit code 75."""

    EXIT_CODE = 75  # EX_TEMPFAIL: a temporary failure, to be retried.


class StorageError(Exception):
    """The machine refused a read or write (full disk, read-only, permissions, size limit, a file where a
    directory belongs): one line, exit code 74, and the run is not marked failed, since rerunning once
    the cause is fixed resumes it."""

    EXIT_CODE = 74  # EX_IOERR.
