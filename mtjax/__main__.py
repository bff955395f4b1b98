"""`python -m mtjax ...`: the `mtjax` command (`mtjax.cli.main`)."""

import sys

from mtjax import cli

if __name__ == "__main__":
    sys.exit(cli.main())
