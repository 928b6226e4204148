"""`mtdiff dataset` as a script, with the same arguments
(`mtdiff.commands.dataset`): python pipelines/dataset.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.dataset import main

if __name__ == "__main__":
    sys.exit(guarded(main))
