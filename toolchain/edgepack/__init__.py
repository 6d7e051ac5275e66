"""edgepack: compress a PyTorch model, convert it to full-integer TFLite and measure it on a target.

The pipeline's stages live in modules named after them, in the order data flows:
``profiles`` -> ``models`` -> ``compress.prune`` / ``compress.distill`` -> ``convert`` ->
``compress.quantize`` -> ``validate`` -> ``devices`` -> ``package``. ``api.build`` runs them.
"""

__version__ = "0.1.0"
