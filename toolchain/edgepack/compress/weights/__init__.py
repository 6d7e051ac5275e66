"""The weight methods a profile can ask for after pruning: unstructured sparsity (``sparsity.py``),
non-uniform weight levels (``levels.py``), activation sparsity (``activations.py``),
quantization-aware training (``qat.py``), a narrower student (``student.py``), BatchNorm folding
(``fold.py``) and the fine-tuning they share (``finetune.py``)."""
