"""`mtdiff sweep horizon-prompt` as a script, with the same arguments
(`mtdiff.commands.sweep_horizon_prompt`): python sweeps/horizon_prompt.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.sweep_horizon_prompt import main

if __name__ == "__main__":
    sys.exit(guarded(main))
