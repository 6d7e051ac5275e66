"""Measuring what was built: accuracy of the artifacts (``accuracy.py``), latency on a device
(``bench.py``), energy from power meters or estimates (``energy.py``, ``ppk2.py``), budget verdicts
(``verdicts.py``) and the local bench history (``history.py``)."""
