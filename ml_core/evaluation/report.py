"""What the held-out evaluation prints and draws: paired differences, the summary table, the plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ml_core.evaluation.evaluation import EvaluationResult

#: the methods the plot shows, in order (the ranker and two-stage rows are the selected variant's).
PLOTTED_METHODS = ("random", "prior", "nearest", "nearest_source_profile", "source_similarity", "h_score", "logme",
                   "ranker", "two_stage", "oracle_nearest")


def paired_differences(
    rows: pd.DataFrame, baseline: str = "prior", metric: str = "weighted_tau_truth"
) -> pd.DataFrame:
    """Each method minus ``baseline``, paired by fold (per-fold means of ``metric``).

    Per protocol and method: the mean difference over folds, its standard error (std / sqrt(n),
    ddof 1) and in how many folds the method was strictly better. With a dozen folds whose own
    spread is large, this says whether a difference in the means is more than noise.
    """
    records = []
    for protocol, part in rows.groupby("protocol", sort=False):
        per_fold = part.groupby(["fold", "method"])[metric].mean().unstack()
        if baseline not in per_fold:
            continue
        for method in per_fold.columns:
            if method == baseline:
                continue
            diff = (per_fold[method] - per_fold[baseline]).dropna()
            n = len(diff)
            records.append({
                "protocol": protocol, "method": method, "n_folds": n, "mean_difference": float(diff.mean()),
                "standard_error": float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                "folds_better": int((diff > 0).sum()),
            })
    return pd.DataFrame(records)


def summary_markdown(summary: pd.DataFrame, methods: Sequence[str] | None = None) -> str:
    """A compact table: mean +- std over folds of the headline metrics and the compute."""
    lines = ["| protocol | method | wtau (truth) | wtau (scipy) | tau-b | spearman | regret (pts) | top-3 recall | forward passes | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in summary.itertuples():
        if methods is not None and row.method not in methods:
            continue
        cells = [f"{getattr(row, f'{m}_mean'):+.3f} ± {getattr(row, f'{m}_std'):.3f}" for m in
                 ("weighted_tau_truth", "weighted_tau_scipy", "kendall_tau_b", "spearman")]
        cells.append(f"{row.top1_regret_mean:.1f} ± {row.top1_regret_std:.1f}")
        cells.append(f"{row.top3_recall_mean:.2f}")
        cells.append(f"{row.forward_passes_mean:.1f}")
        cells.append(f"{row.seconds_mean:.2f}")
        lines.append(f"| {row.protocol} | {row.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluation_plot(result: EvaluationResult, handle: Any) -> None:
    """Bar chart into the binary file ``handle`` (PNG): mean test weighted tau (truth-ordered) per
    method and protocol, with the spread over folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary("test")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, protocol in zip(axes, ("family", "models"), strict=True):
        part = summary[(summary["protocol"] == protocol) & summary["method"].isin(PLOTTED_METHODS)]
        part = part.set_index("method").reindex([m for m in PLOTTED_METHODS if m in set(part["method"])])
        ax.bar(part.index, part["weighted_tau_truth_mean"], yerr=part["weighted_tau_truth_std"], capsize=3)
        ax.set_title(f"leave-{protocol}-out (test)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.tick_params(axis="x", rotation=45)
    axes[0].set_ylabel("weighted tau (truth-ordered)")
    fig.tight_layout()
    fig.savefig(handle, format="png", dpi=80)
    plt.close(fig)
