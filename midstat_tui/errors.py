"""The one exception type the faces turn into a one-line message and an exit status."""


class MidstatError(Exception):
    """A user-facing error: printed as one line on stderr, exit status `status`."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
