"""Costs beside a ranking: each model's cost columns, the Pareto front of predicted score vs cost, budgets.

A model is on the **front** when no other model is at least as good on both axes and strictly better on
one: predicted score (higher is better) and cost (lower is better). Ties are explicit: models with
exactly the same score and the same cost do not dominate one another, so all of them are on the front
(or none is); a model with the same score as a cheaper one, or the same cost as a better one, is
dominated. A model whose score or cost is unknown (NaN) is never on the front and dominates nothing.

The cost axis is latency per image at batch 1 (``latency_ms_b1``) when any model has one, else the
parameter count (``params``: known even for networks that could not be built): one axis for every model,
never a mix of the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: the cost columns a recommendation table gains (:meth:`ml_core.weights.costs.ModelCosts.columns`)
COST_COLUMNS = ("params", "size_mb", "gflops", "latency_ms_b1", "latency_ms_b32")
#: the cost axes of the front, in order of preference
FRONT_COSTS = ("latency_ms_b1", "params")
COST_LABELS = {"latency_ms_b1": "CPU latency per image at batch 1 (ms)", "params": "parameters"}


def pareto_front(score: Sequence[float] | np.ndarray, cost: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(N,)`` bool: which points are on the front of ``score`` (higher better) vs ``cost`` (lower
    better); see the module docstring for ties and missing values. O(N log N)."""
    score = np.asarray(score, dtype=float)
    cost = np.asarray(cost, dtype=float)
    if score.shape != cost.shape or score.ndim != 1:
        raise ValueError(f"pareto_front: score and cost must be 1-d of one length, got {score.shape} and {cost.shape}")
    on_front = np.zeros(len(score), dtype=bool)
    known = np.flatnonzero(np.isfinite(score) & np.isfinite(cost))
    if not len(known):
        return on_front
    order = known[np.lexsort((-score[known], cost[known]))]  # cheapest first, best first within a cost
    best_cheaper = -np.inf  # best score among strictly cheaper points
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and cost[order[stop]] == cost[order[start]]:
            stop += 1
        group = order[start:stop]
        top = score[group[0]]
        if top > best_cheaper:  # equal to a cheaper point's score: dominated by it
            on_front[group[score[group] == top]] = True
        best_cheaper = max(best_cheaper, top)
        start = stop
    return on_front


def front_cost(table: pd.DataFrame) -> str | None:
    """The cost axis of the front for ``table``: the first of :data:`FRONT_COSTS` any model has, or None."""
    for column in FRONT_COSTS:
        if column in table and pd.to_numeric(table[column], errors="coerce").notna().any():
            return column
    return None


def with_costs(table: pd.DataFrame, costs: Mapping[str, Mapping[str, float | None]]) -> tuple[pd.DataFrame, str | None]:
    """``table`` (a ranking with ``model`` and ``score``) with the :data:`COST_COLUMNS` of each model
    (``costs``: ``{model: {column: value or None}}``; NaN where unknown) and ``on_front``; and the cost
    axis the front used (None: no model has a known cost, and no model is on the front)."""
    out = table.copy()
    for column in COST_COLUMNS:
        values = [(costs.get(m) or {}).get(column) for m in out["model"]]
        out[column] = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    axis = front_cost(out)
    out["on_front"] = pareto_front(out["score"], out[axis]) if axis else np.zeros(len(out), dtype=bool)
    return out, axis


@dataclass
class BudgetFilter:
    """A ranking cut to a budget: ``table`` the models within it (the whole-zoo ranks kept), ``over``
    ``{flag: [models]}`` those over each limit, ``unknown`` ``{model: the costs it lacks}`` those
    excluded because a limited cost is unknown."""

    table: pd.DataFrame
    limits: dict[str, float]
    over: dict[str, list[str]] = field(default_factory=dict)
    unknown: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_filtered(self) -> int:
        return len({m for models in self.over.values() for m in models} | set(self.unknown))

    def to_dict(self) -> dict[str, Any]:
        return {"limits": self.limits, "n_kept": len(self.table), "n_filtered": self.n_filtered,
                "over": self.over, "unknown_cost": self.unknown}


#: budget column -> what a limit on it is called (the CLI's flag)
BUDGET_FLAGS = {"params": "--max-params", "latency_ms_b1": "--max-latency-ms"}


def within_budget(table: pd.DataFrame, *, max_params: float | None = None,
                  max_latency_ms: float | None = None) -> BudgetFilter:
    """The models of ``table`` (with :data:`COST_COLUMNS`) within ``max_params`` parameters and
    ``max_latency_ms`` per image at batch 1 (None: no limit). A model whose limited cost is unknown
    is excluded, and listed as such, never assumed cheap."""
    limits = {c: float(v) for c, v in (("params", max_params), ("latency_ms_b1", max_latency_ms)) if v is not None}
    keep = np.ones(len(table), dtype=bool)
    over: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for column, limit in limits.items():
        values = pd.to_numeric(table[column], errors="coerce") if column in table else pd.Series(np.nan, index=table.index)
        missing = values.isna().to_numpy()
        above = (~missing) & (values.to_numpy() > limit)
        over[BUDGET_FLAGS[column]] = table.loc[above, "model"].tolist()
        for model in table.loc[missing, "model"]:
            unknown.setdefault(model, []).append(column)
        keep &= ~(missing | above)
    return BudgetFilter(table[keep].reset_index(drop=True), limits, over, unknown)


def front_plot(table: pd.DataFrame, axis: str, handle: Any, title: str = "") -> None:
    """PNG into the binary file ``handle``: predicted score vs the cost ``axis`` of every model with
    a known cost, the front highlighted (a line through it, each front model labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = pd.to_numeric(table[axis], errors="coerce")
    known = table[cost.notna() & np.isfinite(table["score"])]
    front = known[known["on_front"]].sort_values(axis)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rest = known[~known["on_front"]]
    ax.scatter(rest[axis], rest["score"], color="#9aa5b1", s=22, label="dominated")
    ax.step(front[axis], front["score"], where="post", color="#d9480f", lw=1, alpha=0.6)
    ax.scatter(front[axis], front["score"], color="#d9480f", s=40, zorder=3, label="Pareto front")
    for row in front.itertuples():
        ax.annotate(str(row.model), (getattr(row, axis), row.score), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    if len(known) and known[axis].max() > 10 * max(known[axis].min(), 1e-12):
        ax.set_xscale("log")
    ax.set_xlabel(COST_LABELS.get(axis, axis) + " (lower is better)")
    ax.set_ylabel("predicted score (higher is better)")
    missing = len(table) - len(known)
    ax.set_title(title + (f" ({missing} model(s) of unknown cost not shown)" if missing else ""), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(handle, format="png", dpi=80)
    plt.close(fig)
