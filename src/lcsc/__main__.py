import sys

from lcsc.cli import main

sys.exit(main())
