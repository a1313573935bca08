"""`python -m fastbp ...` runs the `fastbp` command."""

import sys

from fastbp.cli import main

sys.exit(main())
