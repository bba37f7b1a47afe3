"""``python -m whop_pipeline.cli``: the same as the ``whop-pipeline`` command."""

import sys

from whop_pipeline.cli import main

sys.exit(main())
