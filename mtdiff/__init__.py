"""mtdiff: MTDiff (diffusion planner + data synthesizer for multi-task offline RL) on Ray.

Nothing happens at import time: submodules are imported where they are used.
"""

__version__ = "0.1.0"
