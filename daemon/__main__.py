"""`python -m portbell.daemon`: the same as the `portbell` command."""

import sys

from .cli import main

sys.exit(main())
