"""The stages of ``edgepack build``, each a function from typed inputs to a typed output.

    inputs     profile, data, calibration set, model                (stages/inputs.py, not cached)
    prune      prune + recover, with the accuracy back-off           (stages/prune.py)
    convert    float TFLite through ONNX and onnx2tf                 (stages/convert.py)
    quantize   calibrated full-integer TFLite under the accuracy guard (stages/quantize.py)
    validate   int8 accuracy, TFLM agreement and arena on MCUs        (stages/validate.py)
    executorch .pte programs for the profile's backends              (stages/executorch.py)
    measure    latency (and energy) of each artifact                 (stages/measure.py)
    budgets    every budget judged, BudgetError when one is broken   (stages/budgets.py, not cached)
    bundle     manifest, report and files written atomically         (stages/bundle.py, not cached)

Each cached stage has a key (``keys.py``) over everything that can change its output; its output
is stored under that key in the stage cache (``edgepack.stages.cache``) and read back instead of
recomputed on the next build with the same key. ``pipeline.build`` composes them.
"""
