"""Training: MTDiff-P / -P-onehot / -S and every method of `mtdiff.methods` on Ray Train
(`mtdiff.train.ray_train`). The stage is `mtdiff.train.stage.run(cfg, inputs, out)`; the
few-step students are `mtdiff.train.distill.run(cfg, inputs, out)`.
"""
