"""The metric and loss of the built-in two-head demo: ``zoo:two-head`` on ``digits-pose``.

The model returns ``{"classes": logits, "angle": degrees}``; each target row is (digit, angle in
degrees). They are ordinary user functions (``tasks/user.py``'s signatures, outputs by name), named
by the demo's task the way a user's own would be: the build is judged by the class head's top-1
accuracy, and both heads train (and distil) together. The angle head's fidelity to the float model
is in the manifest with every output's (``accuracy.int8_vs_float_outputs.outputs``).
"""

from __future__ import annotations

import numpy as np

#: angles are learned in units of this many degrees (a loss of the class head's scale)
ANGLE_SCALE = 30.0


def class_accuracy(outputs, targets, inputs) -> float:
    """Top-1 accuracy (%) of the ``classes`` output against each row's digit."""
    if not isinstance(outputs, dict) or "classes" not in outputs:
        raise ValueError("digits-pose is judged on a model with outputs 'classes' and 'angle' (zoo:two-head)")
    return float((np.asarray(outputs["classes"]).argmax(1) == np.asarray(targets)[:, 0]).mean() * 100)


def pose_loss(outputs, targets, inputs, teacher):
    """Cross-entropy on the digit plus smooth L1 on the angle (in units of ``ANGLE_SCALE`` degrees);
    with a teacher, its outputs are matched too (KL on the classes, L2 on the angle) and weigh half."""
    import torch.nn.functional as F

    if not isinstance(outputs, dict) or {"classes", "angle"} - set(outputs):
        raise ValueError("digits-pose trains a model with outputs 'classes' and 'angle' (zoo:two-head)")
    t = targets.to(outputs["classes"].dtype)
    hard = F.cross_entropy(outputs["classes"], t[:, 0].long()) + F.smooth_l1_loss(
        outputs["angle"].reshape(-1) / ANGLE_SCALE, t[:, 1] / ANGLE_SCALE)
    if teacher is None:
        return hard
    soft = F.kl_div(F.log_softmax(outputs["classes"], 1), F.log_softmax(teacher["classes"], 1), reduction="batchmean",
                    log_target=True) + F.mse_loss(outputs["angle"] / ANGLE_SCALE, teacher["angle"] / ANGLE_SCALE)
    return 0.5 * hard + 0.5 * soft
