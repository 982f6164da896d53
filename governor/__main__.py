"""``python -m governor`` runs the ``governor`` command."""

import sys

from governor.cli.main import main

sys.exit(main())
