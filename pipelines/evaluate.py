"""`mtdiff evaluate` as a script, with the same arguments
(`mtdiff.commands.evaluate`): python pipelines/evaluate.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(guarded(main))
