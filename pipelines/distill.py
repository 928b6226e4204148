"""`mtdiff distill` as a script, with the same arguments
(`mtdiff.commands.distill`): python pipelines/distill.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.distill import main

if __name__ == "__main__":
    sys.exit(guarded(main))
