"""`python -m graphport.cli ...`, the same as the `graphport` command."""

from graphport.cli import run

run()
