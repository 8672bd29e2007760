"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing models, bad config).

    The message is printed as a single line without a traceback; ``exit_code`` is returned.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ModelsNotInstalled(UserError):
    """Raised when fetched models or the demo video are missing from the cache."""

    def __init__(self, what: str, command: str = "python main.py models install"):
        super().__init__(f"{what} is not installed; run: {command}")


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when empty): for one-line reports."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
