"""``python -m simwatch``."""

import sys

from simwatch.cli import main

sys.exit(main())
