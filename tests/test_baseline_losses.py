"""The baselines' losses against TorchRL's loss modules on the same batch, weights and
random stream: BCLoss (MTBC), IQLLoss (MTIQL), CQLLoss (MTCQL), DTLoss
(MT-DT, Prompt-DT). Our multi-head critics and task-conditioned actors enter TorchRL
through thin TensorDictModule adapters; its vmap over critics is turned off (a plain loop)
because a forward pass groups samples by task."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtdiff import keys
from mtdiff.baselines import mtbc, mtcql, mtiql
from mtdiff.baselines.dt import DecisionTransformer, dt_inputs, dt_loss
from mtdiff.baselines.nets import (
    DeterministicActor,
    GaussianActor,
    MultiHeadQ,
    MultiHeadV,
    TanhGaussianActor,
    gaussian,
    tanh_normal,
)
from mtdiff.config import apply_overrides, get_preset
from mtdiff.models.gpt2 import GPTConfig

pytest.importorskip("torchrl")
from tensordict import TensorDict  # noqa: E402
from tensordict.nn import TensorDictModule  # noqa: E402
from torchrl.modules import ProbabilisticActor  # noqa: E402
from torchrl.objectives import BCLoss, CQLLoss, DTLoss, IQLLoss  # noqa: E402
from torchrl.objectives.utils import ValueEstimators  # noqa: E402

OBS, ACT, TASKS, B = 5, 3, 3, 12
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _hp(method: str, **over):
    """`method`'s own section of the smoke preset with `over` set through `--set` names."""
    cfg = apply_overrides(get_preset("smoke"), [f"methods.{method}.{k}={v}"
                                                for k, v in over.items()])
    return cfg.methods[method]


def _batch(seed: int = 0, same_next: bool = False) -> dict[str, torch.Tensor]:
    """A "qlearning" batch; tasks unbalanced and shuffled, some terminal transitions."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, OBS, generator=g)
    return {keys.BATCH_OBS: s, keys.BATCH_ACTION: torch.rand(B, ACT, generator=g) * 1.8 - 0.9,
            keys.BATCH_REWARD: torch.rand(B, generator=g),
            keys.BATCH_NEXT_OBS: s.clone() if same_next else torch.randn(B, OBS, generator=g),
            keys.BATCH_DONE: (torch.rand(B, generator=g) < 0.3).float(),
            keys.BATCH_TASK_ID: torch.tensor([2, 0, 1, 1, 0, 2, 2, 1, 0, 0, 2, 1])}


def _sat(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return batch[keys.BATCH_OBS], batch[keys.BATCH_ACTION], batch[keys.BATCH_TASK_ID]


def _td(batch: dict[str, torch.Tensor]) -> TensorDict:
    """The batch in TorchRL's layout (next-step entries under "next")."""
    done = batch[keys.BATCH_DONE].bool()[:, None]
    t = batch[keys.BATCH_TASK_ID]
    return TensorDict({
        "observation": batch[keys.BATCH_OBS], "action": batch[keys.BATCH_ACTION], "task_id": t,
        "next": {"observation": batch[keys.BATCH_NEXT_OBS], "task_id": t,
                 "reward": batch[keys.BATCH_REWARD][:, None], "done": done,
                 "terminated": done}}, batch_size=[B])


class _Call(nn.Module):
    """Adapter: TorchRL passes keyword-less tensors; `fn(module, *args)` makes the output."""

    def __init__(self, module: nn.Module, fn) -> None:
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, *args: torch.Tensor):
        return self.fn(self.module, *args)


def _single_critics(q: MultiHeadQ) -> list[TensorDictModule]:
    """Our twin critic as TorchRL's list of Q networks (one head set each, same weights)."""
    out = []
    for i in range(q.heads.n_nets):
        one = MultiHeadQ(OBS, ACT, TASKS, hidden=8, n_nets=1)
        for dst, src in zip(one.parameters(), q.parameters(), strict=True):
            dst.data.copy_(src.data[i:i + 1])
        out.append(TensorDictModule(
            _Call(one, lambda m, s, a, t: m(s, a, t)[0][:, None]),
            in_keys=["observation", "action", "task_id"], out_keys=["state_action_value"]))
    return out


def _move_current_critics(loss, q: MultiHeadQ) -> None:
    """Step the current critics away from their targets (TorchRL copies them at
    construction), the same on both sides: a target / current swap then shows."""
    g = torch.Generator().manual_seed(5)
    ours = dict(q.named_parameters())
    with torch.no_grad():
        for key, theirs in loss.qvalue_network_params.items(True, True):
            theirs.add_(0.1 * torch.randn(theirs.shape, generator=g))  # (2, 1, ...) stacked
            ours[".".join(key[2:])].copy_(theirs.squeeze(1))


def _prob_actor(actor: nn.Module, dist) -> ProbabilisticActor:
    return ProbabilisticActor(
        TensorDictModule(_Call(actor, lambda m, s, t: m(s, t)), in_keys=["observation", "task_id"],
                         out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"], distribution_class=dist)


def test_mtbc_loss_equals_torchrl_bc_loss():
    torch.manual_seed(0)
    actor = DeterministicActor(OBS, ACT, TASKS, hidden=8, task_dim=4)
    batch = _batch()
    ours = mtbc.bc_loss(actor, batch)
    module = TensorDictModule(_Call(actor, lambda m, s, t: m(s, t)),
                              in_keys=["observation", "task_id"], out_keys=["action"])
    theirs = BCLoss(module, loss_function="l2")(_td(batch))["loss_bc"]
    torch.testing.assert_close(ours, theirs, **TOL)
    assert ours > 0


@pytest.mark.parametrize("deterministic", [False, True])
def test_mtiql_losses_equal_torchrl_iql_loss(deterministic):
    torch.manual_seed(1)
    hp = _hp("mtiql", deterministic=deterministic, beta=3.0, expectile=0.7)
    actor = (DeterministicActor if deterministic else GaussianActor)(
        OBS, ACT, TASKS, hidden=8, task_dim=4)
    q = MultiHeadQ(OBS, ACT, TASKS, hidden=8, n_nets=2)
    v = MultiHeadV(OBS, TASKS, hidden=8)
    q_target = copy.deepcopy(q)
    batch = _batch(1)
    if deterministic:  # TorchRL's IQL needs a distribution: only V and Q are compared here
        actor_td = _prob_actor(GaussianActor(OBS, ACT, TASKS, hidden=8, task_dim=4), gaussian)
    else:
        actor_td = _prob_actor(actor, gaussian)
    v_td = TensorDictModule(_Call(v, lambda m, s, t: m(s, t)[:, None]),
                            in_keys=["observation", "task_id"], out_keys=["state_value"])
    loss = IQLLoss(actor_td, _single_critics(q), v_td, num_qvalue_nets=2, loss_function="l2",
                   temperature=hp.beta, expectile=hp.expectile, deactivate_vmap=True)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=hp.discount)
    _move_current_critics(loss, q)
    assert not torch.allclose(q(*_sat(batch)), q_target(*_sat(batch)))
    ours = mtiql.iql_losses(actor, q, q_target, v, batch, hp)
    td = _td(batch)
    torch.testing.assert_close(ours["v_loss"], loss.value_loss(td.clone())[0], **TOL)
    # TorchRL sums the twin critics' squared errors; CORL (ours) averages them.
    torch.testing.assert_close(2 * ours["q_loss"], loss.qvalue_loss(td.clone())[0], **TOL)
    if not deterministic:
        torch.testing.assert_close(ours["actor_loss"], loss.actor_loss(td.clone())[0], **TOL)
    assert ours["q_loss"] > 0 and ours["v_loss"] > 0


def _cql_pair(hp, same_next: bool = False):
    torch.manual_seed(2)
    actor = TanhGaussianActor(OBS, ACT, TASKS, hidden=8, task_dim=4)
    q = MultiHeadQ(OBS, ACT, TASKS, hidden=8, n_nets=2, orthogonal_init=True)
    loss = CQLLoss(_prob_actor(actor, tanh_normal), _single_critics(q), loss_function="l2",
                   alpha_init=1.0, target_entropy=-float(ACT), temperature=hp.temp,
                   min_q_weight=hp.alpha, num_random=hp.n_actions,
                   deterministic_backup=True, deactivate_vmap=True)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=hp.discount)
    q_target = copy.deepcopy(q)
    _move_current_critics(loss, q)
    return actor, q, q_target, loss, _batch(2, same_next)


def _compare_cql(hp, same_next: bool) -> dict[str, torch.Tensor]:
    """Our CQL pieces and TorchRL's on the same draws; asserts the losses that match."""
    actor, q, q_target, loss, batch = _cql_pair(hp, same_next)
    log_alpha = torch.zeros((), requires_grad=True)
    td = _td(batch)
    torch.manual_seed(10)  # the same draws in the same order on both sides
    y = mtcql.td_target(actor, q_target, log_alpha, batch, hp)
    torch.manual_seed(11)
    crit = mtcql.critic_losses(actor, q, batch, y, hp)
    torch.manual_seed(12)
    pol = mtcql.actor_alpha_losses(actor, q, log_alpha, batch, -float(ACT))
    torch.manual_seed(10)
    q_loss = loss.q_loss(td)[0]
    torch.manual_seed(11)
    cql_loss = loss.cql_loss(td)[0]
    torch.manual_seed(12)
    actor_loss, meta = loss.actor_loss(td)
    alpha_loss = loss.alpha_loss(meta)[0]
    torch.testing.assert_close(crit["q_loss"], q_loss, **TOL)
    torch.testing.assert_close(pol["actor_loss"], actor_loss, **TOL)
    torch.testing.assert_close(pol["alpha_loss"], alpha_loss, **TOL)
    return {**crit, "theirs": cql_loss}


def _penalty(crit: dict[str, torch.Tensor], hp, per_row: bool) -> torch.Tensor:
    """alpha * sum_i E[T lse(cat / T) - Q_i(s, a)] from our sampled Q values; the
    log-sum-exp over each state's 3 n actions (CQL, CORL) or, as TorchRL 0.14.1's
    CQLLoss, over the 3 sources of each of the n sampled rows."""
    cat = crit["cql_cat"]  # (2, B, 3 n): [uniform (n), pi(s') (n), pi(s) (n)]
    if per_row:
        cat = cat.view(2, B, 3, hp.n_actions).transpose(2, 3)  # (2, B, n, 3)
    ood = torch.logsumexp(cat / hp.temp, dim=-1) * hp.temp
    return hp.alpha * (ood.flatten(1).mean(1) - crit["q_data"].mean(1)).sum()


def test_mtcql_losses_equal_torchrl_cql_loss():
    # TD, actor and alpha losses are equal (asserted inside); the penalty's sampled actions
    # and Q values are TorchRL's: its value follows from ours with its reduction ...
    for hp, same_next in ((_hp("mtcql", next_action_obs="next"), False),
                          (_hp("mtcql", next_action_obs="current"), True)):
        out = _compare_cql(hp, same_next)
        torch.testing.assert_close(_penalty(out, hp, per_row=True), out["theirs"], **TOL)
        # ... while ours reduces over all 3 n actions of a state (CQL / CORL), a different
        # number: TorchRL's per-row log-sum-exp is not CQL(H)'s penalty.
        torch.testing.assert_close(_penalty(out, hp, per_row=False), out["cql_loss"], **TOL)
        assert not torch.allclose(out["cql_loss"], out["theirs"], **TOL)
    # CORL's default scores pi(.|s')'s actions at s: other Q values than TorchRL's at s'.
    hp = _hp("mtcql", next_action_obs="current")
    out = _compare_cql(hp, same_next=False)
    assert not torch.allclose(_penalty(out, hp, per_row=True), out["theirs"], **TOL)


@pytest.mark.parametrize("variant", ["mtdt", "promptdt"])
def test_dt_loss_equals_torchrl_dt_loss_without_padding(variant):
    torch.manual_seed(3)
    K, J = 4, 3
    model = DecisionTransformer(obs_dim=OBS, act_dim=ACT, context=K, max_timestep=50,
                                gpt=GPTConfig(d_model=16, n_layer=2, n_head=2, dropout=0.0),
                                num_tasks=TASKS, task_dim=4 if variant == "mtdt" else 0,
                                prompt_len=J if variant == "promptdt" else 0).eval()
    batch = {keys.BATCH_SEQ_OBS: torch.randn(B, K, OBS),
             keys.BATCH_SEQ_ACTIONS: torch.rand(B, K, ACT) * 2 - 1,
             keys.BATCH_RTG: torch.rand(B, K, 1),
             keys.BATCH_TIMESTEPS: torch.arange(K).repeat(B, 1) + 7,
             keys.BATCH_TASK_ID: torch.arange(B) % TASKS,
             keys.BATCH_PROMPT: torch.randn(B, J, OBS + ACT)}
    pred = model(*dt_inputs(batch), task_id=batch[keys.BATCH_TASK_ID],
                 prompt=batch[keys.BATCH_PROMPT] if variant == "promptdt" else None)
    full = torch.ones(B, K)
    ours = dt_loss(pred, batch[keys.BATCH_SEQ_ACTIONS], full)
    adapter = _Call(model, lambda m, s, a, r, ts, t, p: m(
        s, a, r, ts, task_id=t, prompt=p if variant == "promptdt" else None))
    actor = TensorDictModule(adapter, in_keys=["obs", "action", "rtg", "ts", "task", "prompt"],
                             out_keys=["action_pred"])
    loss = DTLoss(actor, loss_function="l2")
    loss.set_keys(action_pred="action_pred", action_target="action")
    td = TensorDict({"obs": batch[keys.BATCH_SEQ_OBS], "action": batch[keys.BATCH_SEQ_ACTIONS],
                     "rtg": batch[keys.BATCH_RTG], "ts": batch[keys.BATCH_TIMESTEPS],
                     "task": batch[keys.BATCH_TASK_ID], "prompt": batch[keys.BATCH_PROMPT]},
                    batch_size=[B])
    torch.testing.assert_close(ours, loss(td)["loss"], **TOL)
    # Padding (mask 0) past an episode's end does not count in ours.
    mask = full.clone()
    mask[:, -1] = 0
    torch.testing.assert_close(dt_loss(pred, batch[keys.BATCH_SEQ_ACTIONS], mask),
                               (pred - batch[keys.BATCH_SEQ_ACTIONS])[:, :-1].pow(2).mean())
