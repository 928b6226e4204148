"""`mtdiff sweep task-count` as a script, with the same arguments
(`mtdiff.commands.sweep_task_count`): python sweeps/task_count.py --help
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.sweep_task_count import main

if __name__ == "__main__":
    sys.exit(guarded(main))
