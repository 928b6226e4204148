"""`mtdiff collect` as a script, with the same arguments
(`mtdiff.commands.collect`): python pipelines/collect.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.collect import main

if __name__ == "__main__":
    sys.exit(guarded(main))
