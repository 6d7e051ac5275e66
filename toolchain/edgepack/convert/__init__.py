"""Conversion of a PyTorch model to deployable formats (TFLite for now)."""
