"""Train / validation split by place: neighbouring patches of one county look alike and would leak."""
from __future__ import annotations

import random
from collections import defaultdict


def split_groups(groups: list[str], val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """Pick whole groups (counties) for validation, about val_fraction of the frames of each state.

    Stratifying by state keeps broadleaf east and conifer west both represented on each side.
    """
    sizes: dict[str, int] = defaultdict(int)
    for group in groups:
        sizes[group] += 1
    by_state: dict[str, list[str]] = defaultdict(list)
    for group in sorted(sizes):
        by_state[group[:2]].append(group)
    rng = random.Random(seed)
    val: set[str] = set()
    for state, members in sorted(by_state.items()):
        rng.shuffle(members)
        total = sum(sizes[g] for g in members)
        taken = 0
        for group in members:
            if len(members) > 1 and taken + sizes[group] / 2 <= val_fraction * total:
                val.add(group)
                taken += sizes[group]
    return val
