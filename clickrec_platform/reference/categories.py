"""The category tree with each category's root, depth and path from the root."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Why a category has no root: its chain of parents loops, or names a category not in the tree.
CYCLE = "cycle"
UNKNOWN_PARENT = "unknown_parent"


def category_hierarchy(tree: pd.DataFrame) -> pd.DataFrame:
    """category_id, parent_id, root_id, depth (a root is 0), path ("root/…/self"), is_leaf, problem.

    `tree` has one row per category (category_id, parent_id null for a root), as
    `sources.retailrocket.read_category_tree` returns it. A category whose ancestry loops or leads
    to an unknown category keeps its row, with root/depth/path null and the `problem` named, so a
    check can report it instead of the walk never ending.
    """
    ids = tree["category_id"].to_numpy(dtype=np.int64)
    parent = pd.array(tree["parent_id"], dtype="Int64")
    position = pd.Series(np.arange(len(ids)), index=ids)
    has_parent = ~np.asarray(parent.isna())
    parent_pos = np.full(len(ids), -1, dtype=np.int64)
    known = has_parent.copy()
    known[has_parent] = np.isin(parent[has_parent].to_numpy(dtype=np.int64), ids)
    parent_pos[known] = position.loc[parent[known].to_numpy(dtype=np.int64)].to_numpy()

    # Walk every category up one level per step; a chain longer than the tree must loop.
    current = np.arange(len(ids))
    depth = np.zeros(len(ids), dtype=np.int64)
    chains = [[str(i)] for i in ids]
    broken = np.zeros(len(ids), dtype=bool)
    for _ in range(len(ids) + 1):
        up = parent_pos[current]
        climbing = (up >= 0) & ~broken
        if not climbing.any():
            break
        broken |= has_parent[current] & (up < 0)  # its parent is not in the tree
        climbing &= ~broken
        current = np.where(climbing, up, current)
        depth += climbing
        for index in np.flatnonzero(climbing):
            chains[index].append(str(ids[current[index]]))
    unknown = broken | (has_parent[current] & (parent_pos[current] < 0))
    cycle = ~unknown & (parent_pos[current] >= 0)  # still climbing after len(ids) steps
    # numpy's types leave out None, which numpy takes as an object array's element
    problem = np.where(cycle, CYCLE, np.where(unknown, UNKNOWN_PARENT, None))  # type: ignore[call-overload]
    ok = problem == None  # noqa: E711 (elementwise)
    children = set(parent_pos[parent_pos >= 0].tolist())
    frame = pd.DataFrame({
        "category_id": ids,
        "parent_id": parent,
        "root_id": pd.array(ids[current], dtype="Int64", copy=True),
        "depth": pd.array(depth, dtype="Int64"),
        # Typed even when every value is missing, so Delta never stores a column of type void.
        "path": pd.Series(["/".join(reversed(c)) for c in chains], dtype="string").where(ok, pd.NA),
        "is_leaf": [i not in children for i in range(len(ids))],
        "problem": pd.Series(problem, dtype="string"),
    })
    frame.loc[~ok, ["root_id", "depth"]] = pd.NA
    return frame
