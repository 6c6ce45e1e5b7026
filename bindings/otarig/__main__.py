"""``python -m otarig ARGS`` runs the otarig command line."""

import sys

from ._otarig import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
