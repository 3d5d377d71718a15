"""`python -m portbell.tray`: the tray alone (as `portbell tray`)."""

import sys

from .app import main

sys.exit(main())
