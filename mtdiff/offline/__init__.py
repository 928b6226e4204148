"""Offline RL on original and augmented data (paper §5.3, Table 2).

    transitions.py  (s, a, r, s', done) arrays from datasets or arbitrary arrays
    td3bc.py        TD3-BC (Fujimoto & Gu 2021): networks, update, checkpoints
    evaluate.py     batched Meta-World evaluation: success rate and return
    run.py          `run_td3bc`: train, evaluate as it trains, log to MLflow

The augmentations (RAD, S4RL) and data-quality metrics live in `mtdiff.synth`.
"""
