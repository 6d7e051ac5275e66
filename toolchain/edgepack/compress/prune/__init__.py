"""Structured pruning and its recovery: torch-pruning's dependency graph (``graph.py``), channel
pruning to a spec (``channels.py``), per-group sensitivity (``sensitivity.py``), the budget-driven
prune-and-recover loop with its accuracy back-off (``budgeted.py``) and distillation (``distill.py``)."""
