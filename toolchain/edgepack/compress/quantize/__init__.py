"""Full-integer quantization: the TFLite converter's modes (``converter.py``), calibration and its
range methods (``calibrate.py``, ``ranges.py``, ``equalize.py``, ``bias_correction.py``), the
accuracy guard and its per-layer errors (``guard.py``, ``layer_errors.py``, ``tflite_graph.py``)
and the ``.pte`` guard (``pte_guard.py``)."""
