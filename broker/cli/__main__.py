"""``python -m broker.cli`` runs the ``broker`` command."""

import sys

from broker.cli import main

sys.exit(main())
