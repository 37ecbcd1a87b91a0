"""The one exception type that reaches users as a message instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input or request; ``exit_code`` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
