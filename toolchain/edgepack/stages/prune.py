"""Stage: structured pruning with recovery and the accuracy back-off."""

from __future__ import annotations

from dataclasses import dataclass

from ..progress import Reporter


@dataclass
class PruneOut:
    result: object  # compress.prune.PruneResult (holds the pruned model)
    recovery: dict  # the recovery log
    attempts: list[dict]  # the back-off's attempts
    accuracy: float  # the pruned, recovered float model on the held-out split (the task's quality)
    weights: dict | None = None  # what the weights stage did (student, sparsity, levels, QAT), when it ran


def run(inp, rep: Reporter) -> PruneOut:
    from ..compress.prune.budgeted import prune_within_budget
    from ..models.training import predict

    stage = prune_within_budget(inp.loaded, inp.splits, inp.example, inp.profile, rep)
    pr = stage.result
    s = inp.splits
    acc = s.task.quality(predict(pr.model, s.x_eval), s.y_eval, s.x_eval)
    rep.info(f"MACs {pr.macs_before:,} -> {pr.macs_after:,}, parameters {pr.params_before:,} -> {pr.params_after:,}; "
             f"recovered float {s.task.show(acc)}")
    return PruneOut(pr, stage.recovery, stage.attempts, acc)
