"""`mtdiff repro` as a script, with the same arguments (`mtdiff.commands.repro`): reproduce
MTDiff end to end as a graph of jobs on Ray.

    python pipelines/full_repro.py                   # paper on a GPU cluster, else local
    python pipelines/full_repro.py --preset smoke    # a few minutes on 2 CPU cores
    python pipelines/full_repro.py --preset paper --plan          # the jobs, nothing run
    python pipelines/full_repro.py --help            # every option and config field
"""

import sys

from mtdiff.commands import guarded
from mtdiff.commands.repro import main

if __name__ == "__main__":
    sys.exit(guarded(main))
