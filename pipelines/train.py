"""`mtdiff train` as a script, with the same arguments
(`mtdiff.commands.train`): python pipelines/train.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.train import main

if __name__ == "__main__":
    sys.exit(guarded(main))
