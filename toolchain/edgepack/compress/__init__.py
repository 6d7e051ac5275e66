"""Compression stages: structured pruning, distillation-based recovery, int8 quantization."""
