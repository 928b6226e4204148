"""`mtdiff report` as a script, with the same arguments
(`mtdiff.commands.report`): python pipelines/report.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.report import main

if __name__ == "__main__":
    sys.exit(guarded(main))
