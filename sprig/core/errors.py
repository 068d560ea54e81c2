"""Errors a user can fix. The CLI prints them as one line and exits 2; the API maps them to 4xx."""


class SprigError(Exception):
    """Bad input or configuration: the message names the thing and what was expected."""

    http_status = 400


class InputError(SprigError):
    """A corpus, query or data file that cannot be read as expected."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(where + message)
        self.path, self.line = path, line


class IndexCorrupt(SprigError):
    """An index file is missing, truncated or does not match its manifest."""


class DuplicateId(SprigError):
    """A passage id that is already in the index (a write racing another with the same id lands here)."""

    http_status = 409
