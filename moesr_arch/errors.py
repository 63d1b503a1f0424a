"""The base class of the package's user-facing errors."""


class UserError(Exception):
    """A failure caused by the user's input (a file, an option, a value): the command line reports it as one
    line naming the cause, without a traceback. ``InferenceError`` and ``ExportError`` derive from it."""
