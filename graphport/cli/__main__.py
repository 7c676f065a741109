"""`python -m graphport.cli ...`, the same as the `graphport` command."""

import sys

from graphport.cli import main

sys.exit(main())
