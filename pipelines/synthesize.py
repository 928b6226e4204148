"""`mtdiff synthesize` as a script, with the same arguments
(`mtdiff.commands.synthesize`): python pipelines/synthesize.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.synthesize import main

if __name__ == "__main__":
    sys.exit(guarded(main))
