"""Microcontroller figures that are not measured on the host: the layers of a .tflite as the
kernels see them (``layers.py``) and the per-kernel cycle model of Cortex-M CPUs (``cost.py``)."""
