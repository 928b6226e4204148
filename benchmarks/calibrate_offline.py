"""SAC, TD3-BC and Table 4 rates for `benchmarks/calibrate.py`: their update steps, SAC's
acting loop, TD3-BC's evaluation, the dynamics error and the embedding plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from calibrate_common import Calibrator, Clock, timed  # benchmarks/, beside this script

from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.flops import sac_update_flops, td3bc_update_flops


def sac(c: Calibrator) -> None:
    """SAC updates (paper and smoke widths) and the acting loop per suite."""
    from mtdiff.collect.mujoco import sac_env_for
    from mtdiff.collect.sac import ReplayBuffer, make_agent
    from mtdiff.collect.sac_env import metaworld_sac_env

    pts = []
    for hidden, batch in ((256, 256), (64, 64)):
        cfg = apply_overrides(get_preset("paper"), [f"sac.hidden={hidden}",
                                                    f"sac.batch_size={batch}"])
        agent = make_agent(cfg, 39, 4, 0)
        buf = ReplayBuffer(5000, 39, 4, batch, agent.device)
        rng = np.random.default_rng(0)
        buf.add_many(rng.normal(size=(5000, 39)).astype(np.float32),
                     rng.uniform(-1, 1, (5000, 4)).astype(np.float32), rng.random(5000),
                     rng.normal(size=(5000, 39)).astype(np.float32), np.zeros(5000))
        secs = timed(lambda a=agent, b=buf: a.update(b), min_s=1.0, warmup=3)
        pts.append(("", sac_update_flops(cfg, 39, 4), secs))
    c.put_line("sac_update", pts, "SACAgent.update (hidden/batch 256/256 and 64/64)")
    cfg = get_preset("paper")
    for suite, task in (("metaworld", "reach-v3"), ("cheetah-vel", "cheetah-vel-0"),
                        ("ant-dir", "ant-dir-0")):
        spec = metaworld_sac_env(cfg) if suite == "metaworld" else sac_env_for(cfg, suite,
                                                                               "train")
        agent = make_agent(cfg, spec.obs_dim, spec.act_dim, 0)
        buf = ReplayBuffer(2000, spec.obs_dim, spec.act_dim, 256, agent.device)
        env = spec.make(task, 0)
        obs, _ = env.reset(seed=0)
        n = 600
        with Clock() as clk:
            for _ in range(n):
                a = agent.act(obs)
                nxt, r, term, trunc, _ = env.step(a)
                buf.add(obs, a, float(r), nxt, term)
                obs = nxt if not (term or trunc) else env.reset()[0]
        c.put(f"sac_env_steps_per_s.{suite}", n / clk.busy, "steps/s",
              f"SAC acting loop on {task}: act + env step + buffer add, {n} steps")
        env.close()


def td3bc(c: Calibrator, mw: Path) -> None:
    """TD3-BC updates (paper and smoke widths) and its evaluation on reach-v3."""
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.transitions import from_task
    from mtdiff.offline.evaluate import evaluate_policy
    from mtdiff.offline.td3bc import TD3BC

    data = from_task(load_dataset(mw).tasks["reach-v3"])
    pts = []
    agent = None
    for hidden, batch in ((256, 256), (32, 32)):
        cfg = apply_overrides(get_preset("paper"), [f"offline.hidden={hidden}",
                                                    f"offline.batch_size={batch}"])
        agent = TD3BC(39, 4, cfg.offline, seed=0)
        agent.fit_normalizer(data.observations)
        sample = agent.batches(data)
        secs = timed(lambda a=agent, s=sample: a.train(s, 20, log_every=10**9), min_s=1.0)
        pts.append(("", td3bc_update_flops(cfg, 39, 4), secs / 20))
    c.put_line("td3bc_update", pts, "TD3BC.train (hidden/batch 256/256 and 32/32)")
    assert agent is not None
    with Clock() as clk:
        evaluate_policy(agent.act, "reach-v3", episodes=5, num_envs=5, max_episode_steps=300)
    c.put("td3bc_eval_steps_per_s", 5 * 300 / clk.busy, "steps/s",
          "evaluate_policy, reach-v3, 5 envs x 300 steps (TD3-BC actor; local's eval_envs)")


def quality(c: Calibrator, mw: Path, pair_rows: int = 20_000) -> None:
    """Table 4's dynamics error per row, its nearest-neighbour distance per (query,
    reference) pair (`pair_rows` x `pair_rows` transitions: the dataset's rows, jittered
    copies), and its embedding plot (t-SNE, 4 x 200 points)."""
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.transitions import from_task
    from mtdiff.synth.embedding import embedding_plot
    from mtdiff.synth.quality import dynamics_error, nearest_distance

    data = from_task(load_dataset(mw).tasks["reach-v3"])
    with Clock() as clk:
        dynamics_error("reach-v3", data, max_samples=30, seed=0)
    c.put("quality_sample_s", clk.busy / 30, "s",
          "dynamics_error of 30 reach-v3 rows / 30")
    x = data.transition_matrix()
    with Clock() as clk:
        embedding_plot({k: x[:200] for k in ("original", "a", "b", "c")}, c.tmp / "emb.png",
                       method="tsne", max_points=200)
    c.put("embedding_s", clk.busy, "s", "embedding_plot, t-SNE, 4 x 200 rows")
    # Real transitions' widths and scales; jittered copies so no query finds itself.
    rng = np.random.default_rng(0)
    big = np.resize(x, (2 * pair_rows, x.shape[1])).astype(np.float32)
    big += rng.normal(0.0, 0.01, big.shape).astype(np.float32)
    with Clock() as clk:
        nearest_distance(big[:pair_rows], big[pair_rows:])
    c.put("nearest_pair_s", clk.busy / pair_rows ** 2, "s",
          f"nearest_distance, {pair_rows:,} x {pair_rows:,} reach-v3 transitions "
          f"({x.shape[1]} dims; the dataset's rows tiled, jittered by 0.01) / pairs")
