"""``python -m groupconv.parallel ...``: an alias of ``groupconv parallel ...``."""

import sys

from ..cli import main

sys.exit(main(["parallel", *sys.argv[1:]]))
