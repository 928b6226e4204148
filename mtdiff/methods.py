"""The methods the experiment grid knows, by name: what each trains and how it is evaluated.

A method is a `Method`: the model kind it trains (`ModelConfig.kind`), config overrides
it implies (e.g. the U-Net backbone), its role (a *planner* is evaluated by rollouts
through the policy interface `mtdiff.eval.policy`; a *synthesizer* feeds the offline-RL
jobs), the window fields its batches need (`mtdiff.data.windows`), and where its training
step (`learner`), its policy and its own config section (`config`) come from, as
``"module:attribute"`` strings imported only when used.

A method's own hyper-parameters are a `mtdiff.config.base.MethodConfig` dataclass in its
file: `Config.methods` holds one for every method that names one, under the method's name
(which is then its kind too), with the values of the config's preset (`--set
methods.mtiql.beta=10`).

Adding a method = one file that registers it, plus its name in `experiment.methods`: a
method called ``name`` lives in ``mtdiff/baselines/<name>.py`` (dashes as underscores) and
calls `register(Method(...))` at import; it is found the first time the name is looked up
(`get_method`, `method_of_kind`, a config naming its kind), so importing this module
imports no method's file. Table 1's baselines (`mtdiff/baselines/mtbc.py`, ...) and our
`mttd3bc.py` are such files. The grid (`mtdiff.experiment.grid`) then trains and evaluates
the method for every suite, view and seed. Look methods up with `get_method` /
`all_methods`, not in `METHODS`: a file not imported yet has not registered its method.

Only MTDiff's own methods are written here, in `METHODS`: they are the paper's, and have
no config section of their own (their sections, `model`, `diffusion`, `train`, are
everyone's), so no file of their own.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

from mtdiff.errors import ConfigError

__all__ = ["DIFFUSION_KINDS", "METHODS", "ORDER", "Method", "all_methods",
           "find_method", "get_method", "known_kind", "method_configs", "method_of_kind",
           "method_of_meta", "register"]

Role = Literal["planner", "synthesizer"]

# The model kinds that are diffusion models (sampler settings, x0 clip, the diffusion loss).
DIFFUSION_KINDS = ("mtdiff-p", "mtdiff-s", "mtdiff-p-onehot")


@dataclass(frozen=True)
class Method:
    """One method of the grid (see the module docstring)."""

    name: str  # grid / CLI name, e.g. "mtdiff-p-unet"
    kind: str  # ModelConfig.kind it trains
    label: str  # the paper's name (report rows)
    role: Role = "planner"
    overrides: tuple[str, ...] = ()  # config overrides, "section.field=value"
    fields: str = "planner"  # WindowSampler fields its batches need
    learner: str = "mtdiff.train.learner:DiffusionLearner"  # factory(cfg, setup, device)
    policy: str = "mtdiff.eval.policy:PlannerPolicy"  # factory(checkpoint state, device, ...)
    suites: tuple[str, ...] = ("metaworld", "maze2d")  # where the paper reports it
    # A student of another method's trained model (its `distill` job follows the teacher's
    # training job, `mtdiff.train.distill`), instead of a training job of its own.
    teacher: str | None = None
    # Its training leaves a GPU mostly idle (small MLPs: the step is kernel launches and
    # Python): on a GPU cluster it takes `experiment.gpu_share_baseline` of one.
    host_bound: bool = False
    # Its network's cost for `--plan` (`mtdiff.experiment.flops.Net`), "module:attribute"
    # of factory(cfg, suite, obs_dim, act_dim, n_tasks); None: MTDiff's own models, which
    # `flops.network` prices itself.
    network: str | None = None
    # Its own config section, "module:attribute" of a `MethodConfig` dataclass; None: none
    # (the sections every method shares are all it reads).
    config: str | None = None

    @property
    def diffusion(self) -> bool:
        """True for the diffusion models (whose policies take the sampler settings)."""
        return self.kind in DIFFUSION_KINDS

    def load(self, what: Literal["learner", "policy", "network", "config"]) -> Any:
        """The learner, policy or network-cost factory, or the config class (imported now)."""
        module, _, attr = getattr(self, what).partition(":")
        return getattr(importlib.import_module(module), attr)


METHODS: dict[str, Method] = {m.name: m for m in (
    # MTDiff-P and Prompt-DT are the two methods of Table 5 (Cheetah-vel, Ant-dir).
    Method("mtdiff-p", "mtdiff-p", "MTDiff-P",
           suites=("metaworld", "maze2d", "cheetah-vel", "ant-dir")),
    Method("mtdiff-p-onehot", "mtdiff-p-onehot", "MTDiff-P-onehot", suites=("metaworld",)),
    Method("mtdiff-p-unet", "mtdiff-p", "MTDiff-P (U-Net)", overrides=("model.backbone=unet",),
           suites=("metaworld",)),
    # Ours, not the paper's: MTDiff-P distilled into a few-step planner
    # (progressive distillation of the guided teacher; `distill.student_steps`).
    Method("mtdiff-p-distill", "mtdiff-p", "MTDiff-P (distilled)", teacher="mtdiff-p"),
    Method("mtdiff-s", "mtdiff-s", "MTDiff-S", role="synthesizer", fields="synth",
           suites=("metaworld",)),
)}


PLUGINS = "mtdiff.baselines"  # where a method registering itself lives: <package>.<name>
# The order of listings (`all_methods`: the full grid, help, errors): MTDiff's methods,
# then Table 1's baselines (paper §5.1, App. B; files under `PLUGINS`) in the paper's
# order, then the other files' methods by name.
ORDER = (*METHODS, "mtbc", "mtiql", "mtcql", "mtdt", "promptdt")


def register(method: Method) -> Method:
    """Add a method to the registry (its file calls this at import); returns it."""
    if method.config is not None and method.name != method.kind:
        # Its section is found from a checkpoint's or a config's model kind.
        raise ValueError(f"method {method.name!r} has a config section, so its kind must be "
                         f"its name, not {method.kind!r}")
    known = METHODS.get(method.name)
    if known is not None and known != method:
        raise ValueError(f"method {method.name!r} is registered twice, differently")
    METHODS[method.name] = method
    return method


def _discover(name: str) -> None:
    """Import the file of method `name` if there is one (it registers itself)."""
    module = f"{PLUGINS}.{name.replace('-', '_')}"
    if name in METHODS or importlib.util.find_spec(PLUGINS) is None:
        return
    if importlib.util.find_spec(module) is not None:
        importlib.import_module(module)


def all_methods() -> list[str]:
    """Every method: MTDiff's and those the files under `PLUGINS` register (all of them
    imported now), in `ORDER`."""
    import pkgutil

    spec = importlib.util.find_spec(PLUGINS)
    for info in pkgutil.iter_modules(spec.submodule_search_locations if spec else []):
        importlib.import_module(f"{PLUGINS}.{info.name}")
    return sorted(METHODS, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def method_configs() -> dict[str, type]:
    """{method name: its config class} for every method that has one (all imported now)."""
    return {name: METHODS[name].load("config") for name in all_methods()
            if METHODS[name].config is not None}


def find_method(name: str) -> Method | None:
    """The method called `name` (its file imported if need be), or None."""
    _discover(name)
    return METHODS.get(name)


def get_method(name: str) -> Method:
    """The method called `name`; unknown names raise with the list of known ones."""
    method = find_method(name)
    if method is None:
        raise ConfigError(f"unknown method {name!r}; known methods: {sorted(all_methods())}")
    return method


def known_kind(kind: str) -> bool:
    """Whether some method trains model kind `kind` (a method's file is found by its
    name, which is its kind for the methods that register themselves)."""
    _discover(kind)
    return any(m.kind == kind for m in METHODS.values())


def method_of_kind(kind: str, backbone: str = "gpt2") -> Method:
    """The method that trains model kind `kind` (with `backbone`): checkpoints store kinds."""
    _discover(kind)
    for m in METHODS.values():
        default_backbone = f"model.backbone={backbone}" not in m.overrides
        if m.kind == kind and m.teacher is None and default_backbone == (backbone == "gpt2"):
            return m
    raise ConfigError(f"no method trains model kind {kind!r} with backbone {backbone!r}")


def method_of_meta(meta: dict[str, Any]) -> Method:
    """The method that wrote a checkpoint (its `meta`: the method's name, or for older
    checkpoints the model kind and backbone)."""
    if "method" in meta:
        return get_method(meta["method"])
    backbone = meta.get("config", {}).get("model", {}).get("backbone", "gpt2")
    return method_of_kind(meta["kind"], backbone)
