"""`mtdiff sweep budget-curve` as a script, with the same arguments
(`mtdiff.commands.sweep_budget_curve`): python sweeps/budget_curve.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.sweep_budget_curve import main

if __name__ == "__main__":
    sys.exit(guarded(main))
