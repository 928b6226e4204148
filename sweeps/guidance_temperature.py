"""`mtdiff sweep guidance-temperature` as a script, with the same arguments
(`mtdiff.commands.sweep_guidance_temperature`): python sweeps/guidance_temperature.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.sweep_guidance_temperature import main

if __name__ == "__main__":
    sys.exit(guarded(main))
