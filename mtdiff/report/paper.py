"""The paper's numbers as data (He et al., NeurIPS 2023: Tables 1-6; Figs. 4, 5, 6, 7, 9, 10).

Transcribed from our copy of the paper (`shared/paper/mtdiff-paper.md`). Success rates
are in percent, as printed; returns are Meta-World episode returns. Task names are the
paper's Meta-World v2 names mapped to the v3 names this project runs (`v3_name`): only
the suffix changes, the tasks are the same.

What our copy does not show is recorded as such, never guessed:

- Table 2 prints four column headers (Original, S4RL, RAD, MTDiff-S) but only three
  numbers per row: one column's cells were lost. The first number of each row is
  Original (the printed "↑ x%" of the others are relative to it: 23.46 x 3.11 = 72.96
  for box-close's "↑ 211%"); which two of S4RL / RAD / MTDiff-S the other two belong to
  is not legible, so they are kept as `unassigned` cells with their printed change and
  bold mark. The percent improvements in §5.3's text are kept as notes only: they do not
  all match the printed cells.
- Table 6 lists 49 of the 50 tasks: box-close has no row.
- Figs. 5, 6 and 7 are images that our copy lost: no numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Cell:
    """A printed "mean ± std"."""

    mean: float
    std: float


@dataclass(frozen=True)
class PrintedCell:
    """A Table 2 cell whose column is not legible: its value, printed change, bold mark."""

    mean: float
    std: float
    change: str  # as printed, e.g. "↑ 211%"
    bold: bool

    def text(self) -> str:
        """E.g. "73.13 ± 3.51 (↑ 211%, bold)"."""
        return f"{self.mean:.2f} ± {self.std:.2f} ({self.change}{', bold' if self.bold else ''})"


def v3_name(name: str) -> str:
    """The Meta-World v3 name of a paper (v2) task name: "reach-v2" -> "reach-v3"."""
    return re.sub(r"-v\d+$", "", name) + "-v3"


def base_name(name: str) -> str:
    """A task name without its version suffix: "reach-v3" -> "reach"."""
    return re.sub(r"-v\d+$", "", name)


# ---------------------------------------------------------------------------------------
# Table 1 (§5.2): average success rate (%) over 3 seeds on MT50-rand, 50 episodes per task.
# (the paper's row label, near-optimal, sub-optimal, our method name or None); a None cell
# is one the paper leaves empty ("–"). CARE and PaCo are online references (100M steps):
# no method of ours.
# ---------------------------------------------------------------------------------------
TABLE1: Final[tuple[tuple[str, Cell | None, Cell | None, str | None], ...]] = (
    ("CARE [53] (online)", Cell(50.8, 1.0), None, None),
    ("PaCo [56] (online)", Cell(57.3, 1.3), None, None),
    ("MTDT", Cell(20.99, 2.66), Cell(20.63, 2.21), "mtdt"),
    ("PromptDT", Cell(45.68, 1.84), Cell(39.76, 2.79), "promptdt"),
    ("MTBC", Cell(60.39, 0.86), Cell(34.53, 1.25), "mtbc"),
    ("MTCQL", None, None, "mtcql"),
    ("MTIQL", Cell(56.21, 1.39), Cell(43.28, 0.90), "mtiql"),
    ("MTDiff-P", Cell(59.53, 1.12), Cell(48.67, 1.32), "mtdiff-p"),
    ("MTDiff-P-onehot", Cell(61.32, 0.89), Cell(48.94, 0.95), "mtdiff-p-onehot"),
)


# ---------------------------------------------------------------------------------------
# Table 3 (App. C): MTDiff-P with its GPT-2 backbone vs a U-Net of similar size, success
# rate (%) over 3 seeds on MT50-rand. (label, near-optimal, sub-optimal, our method).
# ---------------------------------------------------------------------------------------
TABLE3: Final[tuple[tuple[str, Cell, Cell, str], ...]] = (
    ("MTDiff-P", Cell(59.53, 1.12), Cell(48.67, 1.32), "mtdiff-p"),
    ("MTDiff-P (U-Net)", Cell(55.67, 1.27), Cell(47.42, 0.74), "mtdiff-p-unet"),
)


# ---------------------------------------------------------------------------------------
# Table 5 (App. H): average return over 3 seeds on Prompt-DT's Cheetah-vel and Ant-dir.
# (label, Cheetah-vel, Ant-dir, our method). The paper does not say whether these are
# the training tasks, the held-out tasks or all of them.
# ---------------------------------------------------------------------------------------
TABLE5: Final[tuple[tuple[str, Cell, Cell, str], ...]] = (
    ("MTDiff-P", Cell(-29.09, 0.31), Cell(602.17, 1.68), "mtdiff-p"),
    ("PromptDT", Cell(-34.43, 2.33), Cell(409.81, 9.69), "promptdt"),
)
TABLE5_SUITES: Final = ("cheetah-vel", "ant-dir")
TABLE5_NOTE: Final = ("The paper's Table 5 gives one number per suite and does not say "
                      "which tasks it was measured on (Prompt-DT's training tasks, its "
                      "held-out tasks, or all); ours are shown for both, the paper's number "
                      "beside each.")


# ---------------------------------------------------------------------------------------
# Table 2 (§5.3): TD3-BC success rate (%) over 3 seeds, 500 episodes per task, on the
# original and augmented datasets. MTDiff-S trained on 45 tasks, near-optimal data.
# ---------------------------------------------------------------------------------------
TABLE2_METHODS: Final = ("original", "s4rl", "rad", "mtdiff-s")


@dataclass(frozen=True)
class Table2Row:
    """One task's legible cells: Original, then the printed cells of unknown column."""

    task: str  # v3 name
    seen: bool  # among MTDiff-S's 45 training tasks
    original: Cell
    unassigned: tuple[PrintedCell, PrintedCell]


_P = PrintedCell
TABLE2: Final[tuple[Table2Row, ...]] = (
    Table2Row("box-close-v3", False, Cell(23.46, 7.11),
              (_P(73.13, 3.51, "↑ 211%", True), _P(71.20, 4.84, "↑ 203%", False))),
    Table2Row("hand-insert-v3", False, Cell(30.60, 9.77),
              (_P(60.20, 1.57, "↑ 96%", False), _P(70.87, 3.59, "↑ 131%", True))),
    Table2Row("bin-picking-v3", False, Cell(42.13, 14.33),
              (_P(72.20, 4.17, "↑ 71%", True), _P(43.27, 4.38, "↑ 2%", False))),
    Table2Row("sweep-into-v3", True, Cell(91.8, 1.14),
              (_P(90.53, 3.52, "↓ 1%", False), _P(92.87, 1.11, "↑ 1%", True))),
    Table2Row("coffee-push-v3", True, Cell(28.60, 14.55),
              (_P(28.73, 8.44, "↑ 0.4%", False), _P(33.19, 2.86, "↑ 16%", False))),
    Table2Row("disassemble-v3", True, Cell(60.20, 16.29),
              (_P(52.20, 5.68, "↓ 12%", False), _P(69.00, 4.72, "↑ 14.6%", True))),
)

# §5.3's text, quoted: context only, not table cells (they do not all match the cells).
TABLE2_TEXT_NOTES: Final = (
    "§5.3 (seen): MTDiff-S 'significantly increases performance by about 180%, 131%, and "
    "161% for coffee-push, hand-insert, and coffee-push, respectively' (sic).",
    "§5.3 (unseen): 'MTDiff-S boost the policy performance by 131%, 180% and 32% for "
    "hand-insert, box-close and bin-picking, respectively.'",
    "§5.3: 'S4RL performs the best on the two unseen tasks, i.e., box-close and "
    "bin-picking'; MTDiff-S is said to beat S4RL and RAD on the seen tasks "
    "(coffee-push, disassemble, sweep-into).",
)


# ---------------------------------------------------------------------------------------
# Table 4 (App. E.2): data quality of the augmented data (SynthER's metrics).
# method -> (dynamics error, L2 distance from dataset)
# ---------------------------------------------------------------------------------------
TABLE4: Final[dict[str, tuple[float, float]]] = {
    "mtdiff-s": (0.0174, 0.4552),
    "s4rl": (0.0001, 0.4024),
    "rad": (0.0641, 0.4617),
}


# ---------------------------------------------------------------------------------------
# Table 6 (App. I): MTDiff-P's evaluated return per task on MT50-rand, mean ± std over 50
# episodes. (v2 name, near-optimal, sub-optimal), in the paper's row order.
# ---------------------------------------------------------------------------------------
_TABLE6_V2: Final = (
    ("basketball-v2", (2735.7, 1927.7), (2762.7, 1928.8)),
    ("bin-picking-v2", (733.7, 1211.8), (59.6, 32.3)),
    ("button-press-topdown-v2", (1491.6, 390.9), (1395.8, 332.6)),
    ("button-press-v2", (2419.2, 413.7), (2730.4, 514.3)),
    ("button-press-wall-v2", (3474.7, 887.6), (2613.1, 906.8)),
    ("coffee-button-v2", (3157.9, 1274.3), (1649.4, 869.5)),
    ("coffee-pull-v2", (437.5, 597.3), (98.8, 115.4)),
    ("coffee-push-v2", (463.7, 729.1), (71.3, 55.7)),
    ("dial-turn-v2", (2848.1, 996.3), (2244.5, 881.5)),
    ("disassemble-v2", (369.9, 265.4), (372.3, 623.2)),
    ("door-close-v2", (4325.2, 377.6), (4270.4, 460.1)),
    ("door-lock-v2", (3215.1, 857.5), (3082.4, 1041.4)),
    ("door-open-v2", (3458.1, 960.5), (2457.0, 833.0)),
    ("door-unlock-v2", (2082.6, 1568.4), (3078.8, 1158.1)),
    ("hand-insert-v2", (927.9, 1527.6), (288.8, 932.1)),
    ("drawer-close-v2", (4824.5, 8.8), (4825.3, 22.3)),
    ("drawer-open-v2", (3530.4, 1512.6), (2218.8, 529.3)),
    ("faucet-open-v2", (3877.4, 598.1), (4245.6, 575.2)),
    ("faucet-close-v2", (4167.1, 418.8), (4624.1, 107.5)),
    ("handle-press-side-v2", (3423.3, 1075.6), (3995.8, 1130.0)),
    ("handle-press-v2", (3397.9, 1752.1), (3125.4, 1724.7)),
    ("handle-pull-side-v2", (3141.5, 1775.4), (1474.2, 1392.9)),
    ("handle-pull-v2", (2845.7, 1970.6), (2856.8, 1699.8)),
    ("lever-pull-v2", (3383.5, 1299.2), (3125.6, 1433.1)),
    ("peg-insert-side-v2", (915.1, 1624.8), (497.8, 1015.3)),
    ("pick-place-wall-v2", (649.8, 1288.6), (288.2, 988.1)),
    ("pick-out-of-hole-v2", (1792.8, 1959.9), (700.5, 1190.3)),
    ("reach-v2", (4144.2, 645.4), (966.4, 842.9)),
    ("push-back-v2", (97.2, 611.3), (566.3, 1042.9)),
    ("push-v2", (142.0, 335.7), (64.6, 98.2)),
    ("pick-place-v2", (166.0, 759.2), (7.3, 4.8)),
    ("plate-slide-v2", (4096.4, 1202.5), (4306.3, 495.8)),
    ("plate-slide-side-v2", (2910.3, 616.1), (2989.0, 1044.1)),
    ("plate-slide-back-v2", (4378.5, 373.0), (3963.4, 927.3)),
    ("plate-slide-back-side-v2", (3872.0, 1151.6), (4186.5, 772.6)),
    ("soccer-v2", (443.5, 785.5), (480.4, 994.8)),
    ("push-wall-v2", (873.9, 1718.3), (705.2, 1535.7)),
    ("shelf-place-v2", (204.5, 714.3), (366.1, 919.0)),
    ("sweep-into-v2", (1297.9, 1661.5), (506.2, 1368.5)),
    ("sweep-v2", (1397.1, 1922.3), (599.1, 1359.2)),
    ("window-open-v2", (1453.6, 1101.4), (3095.5, 751.1)),
    ("window-close-v2", (2963.9, 875.3), (3177.6, 737.8)),
    ("assembly-v2", (2470.7, 1758.6), (663.7, 28.7)),
    ("button-press-topdown-wall-v2", (1270.9, 214.5), (1199.9, 203.7)),
    ("hammer-v2", (868.7, 983.4), (1024.4, 1024.3)),
    ("peg-unplug-side-v2", (1439.1, 1817.8), (136.4, 508.6)),
    ("reach-wall-v2", (4249.9, 536.0), (4191.4, 412.9)),
    ("stick-push-v2", (1288.5, 1587.3), (790.1, 1097.6)),
    ("stick-pull-v2", (601.4, 1346.3), (287.1, 922.8)),
)

# v3 name -> (near-optimal, sub-optimal); the paper's row order is kept.
TABLE6: Final[dict[str, tuple[Cell, Cell]]] = {
    v3_name(n): (Cell(*near), Cell(*sub)) for n, near, sub in _TABLE6_V2}

# MT50 tasks without a row in our copy of Table 6.
TABLE6_MISSING: Final = ("box-close-v3",)


# ---------------------------------------------------------------------------------------
# Figures: images lost in our copy; what the text says about them.
# ---------------------------------------------------------------------------------------
FIG5_NOTE: Final = ("Fig. 5 (average scores on the 8 training maps, MTDiff-P vs PromptDT) "
                    "is an image our copy of the paper lost: no numbers. §5.2 and App. D "
                    "(Figs. 4, 10) say MTDiff-P reaches the goal on unseen maps where "
                    "PromptDT fails, and Fig. 9 shows two unseen maps where both fail.")
FIG6_NOTE: Final = ("Fig. 6 ('multi-task and single-task augmentation': TD3-BC on "
                    "coffee-push, disassemble and dial-turn, augmented by MTDiff-S, by "
                    "MTDiff-S-single, i.e. MTDiff-S retrained on that task's data only, and "
                    "by SynthER) is an image our copy of the paper lost: no numbers. §5.3 says "
                    "MTDiff-S outperforms both MTDiff-S-single and SynthER on these tasks. "
                    "SynthER is not part of this reproduction.")
FIG6_TASKS: Final = ("coffee-push-v3", "disassemble-v3", "dial-turn-v3")
FIG7_NOTE: Final = ("Fig. 7 (coffee-push success over 3 seeds, MTDiff-S trained on 10, 20, "
                    "30 and 45 tasks) is an image our copy of the paper lost: no numbers. "
                    "§5.3 says success grows with the number of training tasks.")
FIG7_TASK_COUNTS: Final = (10, 20, 30, 45)
