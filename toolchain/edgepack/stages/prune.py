"""Stage: structured pruning with recovery and the accuracy back-off."""

from __future__ import annotations

from dataclasses import dataclass

from ..progress import Reporter


@dataclass
class PruneOut:
    result: object  # compress.prune.PruneResult (holds the pruned model)
    recovery: dict  # the recovery log
    attempts: list[dict]  # the back-off's attempts
    accuracy: float  # the pruned, recovered float model on the held-out split
    weights: dict | None = None  # what the weights stage did (student, sparsity, levels, QAT), when it ran


def run(inp, rep: Reporter) -> PruneOut:
    from ..compress.prune.budgeted import prune_within_budget
    from ..measure.accuracy import torch_accuracy

    stage = prune_within_budget(inp.loaded, inp.splits, inp.example, inp.profile, rep)
    pr = stage.result
    acc = torch_accuracy(pr.model, inp.splits.x_eval, inp.splits.y_eval)
    rep.info(f"MACs {pr.macs_before:,} -> {pr.macs_after:,}, parameters {pr.params_before:,} -> {pr.params_after:,}; "
             f"recovered float accuracy {acc:.2f}%")
    return PruneOut(pr, stage.recovery, stage.attempts, acc)
