"""``python -m shortcut_models ...`` runs the ``shortcut`` command (also under torchrun)."""

import sys

from .cli import main

sys.exit(main())
