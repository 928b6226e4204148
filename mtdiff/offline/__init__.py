"""Offline RL on original and augmented data (paper §5.3: Tables 2 and 4).

    td3bc.py        TD3-BC (Fujimoto & Gu 2021): networks, update, checkpoints
    evaluate.py     batched Meta-World evaluation: success rate and return
    run.py          `run_td3bc`: train, evaluate as it trains, log to MLflow
    stage.py        the offline stage: one TD3-BC run on a task's data variant (Table 2)
    quality.py      the data-quality stage: Table 4's records and embedding plot

The augmentations (RAD, S4RL) and data-quality metrics live in `mtdiff.synth`.
"""
