"""Task specs shared by the suites: "a task, a named set, or a comma-separated mix".

`resolve_spec` is the one resolver behind `mtdiff.envs.metaworld.resolve_tasks` and
`mtdiff.envs.mujoco_tasks.resolve_tasks`, so every suite reads specs and reports unknown
names the same way (the name, close matches, the sets and what a task name looks like).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence


def resolve_spec(spec: str, sets: Mapping[str, Sequence[str]], tasks: Sequence[str], *,
                 what: str, set_list: str, names_hint: str, empty_hint: str) -> list[str]:
    """The task names `spec` stands for: set names (keys of `sets`, matched
    case-insensitively) and task names (of `tasks`), comma-separated; order kept,
    duplicates dropped.

    An unknown item raises ``ValueError("unknown <what> or task set '<item>'; did you mean
    ...? task sets: <set_list>; <names_hint>")``; an empty spec raises with `empty_hint`.
    """
    lowered = {name.lower(): names for name, names in sets.items()}
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise ValueError(f"empty task spec {spec!r}; {empty_hint}")
    known = set(tasks)
    out: list[str] = []
    for item in items:
        if item.lower() in lowered:
            names: Sequence[str] = lowered[item.lower()]
        elif item in known:
            names = (item,)
        else:
            close = difflib.get_close_matches(item, [*tasks, *sets], n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise ValueError(f"unknown {what} or task set {item!r}; {hint}task sets: "
                             f"{set_list}; {names_hint}")
        out.extend(n for n in names if n not in out)
    return out
