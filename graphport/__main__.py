"""`python -m graphport ...`, the same as the `graphport` command."""

import sys

from graphport.cli import main

sys.exit(main())
