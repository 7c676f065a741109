"""`python -m graphport ...`, the same as the `graphport` command."""

from graphport.cli import run

run()
