"""`mtdiff sweep sampler-steps` as a script, with the same arguments
(`mtdiff.commands.sweep_sampler_steps`): python sweeps/sampler_steps.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.sweep_sampler_steps import main

if __name__ == "__main__":
    sys.exit(guarded(main))
