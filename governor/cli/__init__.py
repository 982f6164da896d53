"""The ``governor`` command line. Each subcommand is one module with ``register(subparsers)``."""
