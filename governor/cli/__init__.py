"""The ``governor`` command line. Each subcommand is one module with ``register(parser)``."""


class CliError(Exception):
    """A user-facing error: printed as one line saying what to do, exit code 2."""
