"""Compression, in the order a build applies it: structured pruning and recovery (``prune/``), the
weight methods (``weights/``) and full-integer quantization (``quantize/``)."""
