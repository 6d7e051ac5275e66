"""ExecuTorch export details the target builds do not reach: operators a backend refuses, and the
partitioners' reasons in the delegation report."""

from __future__ import annotations

import numpy as np
import torch
from edgepack.convert import executorch as et
from edgepack.devices.executorch import ExecuTorchRunner


class _PartlyUnsupported(torch.nn.Module):
    """XNNPACK takes the convolution and the classifier but not a cumulative sum (no kernel) nor an
    average pool with ceil_mode (its partitioner logs why)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 3 * 3, 10)

    def forward(self, x):
        y = torch.relu(self.conv(torch.nn.functional.avg_pool2d(x, 4)))
        y = torch.cumsum(y, dim=3)
        y = torch.nn.functional.avg_pool2d(y, 3, ceil_mode=True)
        return self.fc(y.flatten(1))


def test_operators_left_on_the_cpu_are_named_with_the_reason():
    torch.manual_seed(0)
    model = _PartlyUnsupported().eval()
    x = np.random.default_rng(0).standard_normal((40, 1, 32, 32)).astype(np.float32)
    prog = et.export_xnnpack(model, x)
    d = prog.delegation
    rows = {r["op"]: r for r in d["ops"]}
    assert rows["aten.convolution.default"]["where"] == "xnnpack"
    assert rows["aten.linear.default"]["where"] == "xnnpack"
    assert rows["aten.cumsum.default"]["where"] == "portable CPU kernels"
    assert "did not take it" in rows["aten.cumsum.default"]["why"]
    pool = [r for r in d["ops"] if r["op"] == "aten.avg_pool2d.default" and r["where"] != "xnnpack"]
    assert pool and "ceil mode is not supported" in pool[0]["why"]
    assert d["cpu_ops"] == sum(r["count"] for r in d["ops"] if r["where"] != "xnnpack") >= 2
    # the mixed program still runs in the host runtime and follows the float model
    got = ExecuTorchRunner().run(prog.program, x[:8])
    ref = model(torch.from_numpy(x[:8])).detach().numpy()
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_arm_reject_tables_are_read_row_by_row():
    table = "\n".join([
        "╒════════╤══════════╤═══════╤══════════════════╕",
        "│ Node name │ Target │ Torch func │ Reason │",
        "╞════════╪══════════╪═══════╪══════════════════╡",
        "│ aten_mul │ aten.mul │ mul │ Tensor of rank 7 │",
        "│          │          │     │ is not supported │",
        "├────────┼──────────┼───────┼──────────────────┤",
        "│ aten_erf │ aten.erf │ erf │ no TOSA lowering │",
        "╘════════╧══════════╧═══════╧══════════════════╛",
    ])
    assert et._parse_reject_table(table) == {"aten_mul": "Tensor of rank 7 is not supported",
                                             "aten_erf": "no TOSA lowering"}
