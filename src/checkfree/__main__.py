"""``python -m checkfree``."""

import sys

from checkfree.cli import main

sys.exit(main())
