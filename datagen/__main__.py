"""``python -m datagen SUBCOMMAND ...``; see ``datagen.cli`` for the subcommand registry."""
import sys

from datagen.cli import main

if __name__ == "__main__":
    sys.exit(main())
