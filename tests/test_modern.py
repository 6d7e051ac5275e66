"""Transformer-era blocks through the float conversion: multi-head attention split into linears
(the same function), LayerNorm in both layouts, GELU in both forms, patch unfold/fold, layer scale,
stochastic depth; each converts to TFLite builtins only and agrees with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import modern_architectures as arch
from edgepack.compress.quantize.tflite_graph import FloatGraph
from edgepack.convert.onnx_rewrites import constants_as_initializers, full_rank_constants, rewrite_erf_gelus
from edgepack.convert.attention_heads import split_heads
from edgepack.convert.channels_last import channels_last_islands
from edgepack.convert.tflite import convert_float, export_onnx, to_model_layout
from edgepack.convert.tokens import squeeze_token_batch
from edgepack.devices.host import interpreter
from edgepack.models.attention import SplitAttention, split_attention


# ---- attention split into linears: the same function --------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"batch_first": True}, {"batch_first": False}, {"batch_first": True, "bias": False},
    {"batch_first": True, "kdim": 12, "vdim": 20}, {"batch_first": True, "add_bias_kv": True, "add_zero_attn": True},
])
def test_split_attention_computes_what_multihead_attention_computes(kwargs):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, **kwargs).eval()
    split = SplitAttention(mha).eval()
    b, n, m = 2, 5, 7
    q = torch.randn(b, n, 16) if kwargs["batch_first"] else torch.randn(n, b, 16)
    k = torch.randn(b, m, kwargs.get("kdim", 16)) if kwargs["batch_first"] else torch.randn(m, b, 16)
    v = torch.randn(b, m, kwargs.get("vdim", 16)) if kwargs["batch_first"] else torch.randn(m, b, 16)
    masks = [{}, {"key_padding_mask": torch.tensor([[False] * (m - 2) + [True] * 2, [False] * m])},
             {"attn_mask": torch.randn(n, m)}, {"attn_mask": torch.rand(n, m) > 0.7}]
    if kwargs.get("add_bias_kv"):
        masks = masks[:1]  # the extra key/value columns change the mask widths
    for mask in masks:
        want, want_w = mha(q, k, v, **mask)
        got, got_w = split(q, k, v, **mask)
        assert torch.allclose(got, want, atol=1e-5), mask.keys()
        assert torch.allclose(got_w, want_w, atol=1e-6)
    assert split(q, k, v, need_weights=False)[1] is None


def test_split_attention_replaces_every_module_in_place_and_keeps_the_function():
    torch.manual_seed(0)
    model = arch.ViTTiny().eval()
    x = torch.randn(2, 3, 32, 32)
    want = model(x)
    assert split_attention(model) == ["blocks.0.self_attn", "blocks.1.self_attn"]
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    assert torch.allclose(model(x), want, atol=1e-5)
    model.train()
    model(x).sum().backward()  # trains: every projection gets a gradient
    assert all(p.grad is not None for p in model.blocks[0].self_attn.parameters())


class PackedAttention(nn.Module):
    """timm's layout: one packed qkv linear, num_heads, a scale, a proj; ``scale`` other than
    d_head ** -0.5 makes it something else."""

    def __init__(self, dim=24, num_heads=3, scale=None):
        super().__init__()
        self.num_heads, self.scale = num_heads, scale or (dim // num_heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


def test_hand_written_self_attention_is_adopted_only_where_it_computes_the_same():
    from edgepack.models.attention import prune_attention_heads
    from edgepack.models.hand_attention import SelfAttention, adopt_self_attention

    torch.manual_seed(0)
    vit, x = arch.HandViT().eval(), torch.randn(2, 3, 32, 32)
    want = vit(x)
    assert adopt_self_attention(vit) == ["blocks.0.attn", "blocks.1.attn"]
    assert isinstance(vit.blocks[0].attn, SelfAttention) and torch.allclose(vit(x), want, atol=1e-6)
    # now its heads prune whole, and the model still computes (4 heads -> 3)
    assert prune_attention_heads(vit, lambda name: 0.25) == {"blocks.0.attn": (4, 3), "blocks.1.attn": (4, 3)}
    assert vit(x).shape == (2, 10) and vit.blocks[0].attn.q.out_features == 48

    tokens = torch.randn(2, 9, 24)
    holder = nn.Sequential(PackedAttention(), PackedAttention(scale=0.5)).eval()
    want = holder(tokens)
    assert adopt_self_attention(holder) == ["0"]  # the packed one; the one with another scale is left
    assert isinstance(holder[0], SelfAttention) and isinstance(holder[1], PackedAttention)
    assert torch.allclose(holder(tokens), want, atol=1e-5)


# ---- ONNX rewrites ---------------------------------------------------------------------------------
def _ops(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


class ChannelsLast(nn.Module):
    """ConvNeXt's MLP: permute to channels-last, LayerNorm, linear, GELU, linear, layer scale, back."""

    def __init__(self, c=12):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, c, 3, padding=1), nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)
        self.gamma = nn.Parameter(torch.linspace(0.1, 1.0, c))

    def forward(self, x):
        y = self.conv(x)
        z = self.gamma * self.fc2(nn.functional.gelu(self.fc1(self.norm(y.permute(0, 2, 3, 1)))))
        return y + z.permute(0, 3, 1, 2)


def test_the_channels_last_island_becomes_nchw_with_the_same_function(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model, x = ChannelsLast().eval(), torch.randn(1, 3, 8, 8)
    path = tmp_path / "m.onnx"
    export_onnx(model, x, path)
    constants_as_initializers(path)  # as the conversion does first
    before = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert channels_last_islands(path) == 1
    ops = _ops(path)
    assert "Transpose" not in ops and "LayerNormalization" not in ops and ops.count("Conv") == 3
    after = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert np.abs(after - before).max() < 1e-5
    # the exact GELU's erf (a Flex operator in TFLite) becomes one Gelu node
    assert rewrite_erf_gelus(path) == 1 and "Erf" not in _ops(path) and "Gelu" in _ops(path)


def test_an_island_with_an_operation_it_cannot_rewrite_is_left_alone(tmp_path):
    class Softmaxed(ChannelsLast):
        def forward(self, x):
            y = self.conv(x)
            return y + torch.softmax(self.norm(y.permute(0, 2, 3, 1)), -1).permute(0, 3, 1, 2)

    path = tmp_path / "m.onnx"
    export_onnx(Softmaxed().eval(), torch.randn(1, 3, 8, 8), path)
    before = _ops(path)
    assert channels_last_islands(path) == 0 and _ops(path) == before


def test_constants_get_the_rank_of_the_tensor_they_meet(tmp_path):
    import onnx
    import onnxruntime as ort

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.g = nn.Conv2d(3, 6, 1), nn.Parameter(torch.linspace(0.5, 2, 6).reshape(6, 1, 1))

        def forward(self, x):
            return self.g * self.conv(x)

    path, x = tmp_path / "m.onnx", torch.randn(1, 3, 4, 4)
    export_onnx(Scaled().eval(), x, path)
    before = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert full_rank_constants(path) == 1
    m = onnx.load(str(path))
    mul = next(n for n in m.graph.node if n.op_type == "Mul")
    shapes = {i.name: list(i.dims) for i in m.graph.initializer}
    assert shapes[mul.input[1]] == [1, 6, 1, 1]  # the tensor first, the constant whole
    assert np.abs(ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0] - before).max() < 1e-6


def _ranks(path) -> dict[str, int]:
    import onnx

    from edgepack.convert.onnx_rewrites import static_shapes

    return {k: len(v) for k, v in static_shapes(onnx.load(str(path))).items()}


@pytest.mark.parametrize("norm_first", [True, False])
def test_token_tensors_lose_their_batch_axis_and_attention_is_written_per_head(tmp_path, norm_first):
    import onnxruntime as ort

    from edgepack.convert.onnx_rewrites import constants_as_initializers, fold_constants

    torch.manual_seed(0)
    model = Tokens(nn.TransformerEncoderLayer(48, 4, 96, batch_first=True, norm_first=norm_first)).eval()
    split_attention(model)
    path, x = tmp_path / "m.onnx", torch.randn(1, 3, 32, 32)
    export_onnx(model, x, path)
    fold_constants(path)
    constants_as_initializers(path)
    before = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert max(_ranks(path).values()) == 4 and 3 in _ranks(path).values()
    assert squeeze_token_batch(path) > 0
    assert split_heads(path) == 3  # q, k and v, each cut into its 4 heads
    ranks = _ranks(path)
    # the feature map and its one channels-last view are 4-D; every token and head tensor is 2-D
    assert sorted(v for v in ranks.values() if v > 2) == [4, 4, 4], ranks
    ops = _ops(path)
    assert ops.count("Slice") == 12 and ops.count("Gemm") >= 4 and ops.count("Softmax") == 4
    after = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert np.abs(after - before).max() < 1e-5


def test_token_rewrites_leave_a_convolutional_graph_alone(tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval(),
                torch.randn(1, 3, 16, 16), path)
    before = path.read_bytes()
    assert squeeze_token_batch(path) == 0 and split_heads(path) == 0 and path.read_bytes() == before


# ---- each block class converts to builtins only and agrees with PyTorch ----------------------------
class Tokens(nn.Module):
    """Patch embedding -> a token block -> mean over tokens -> classes."""

    def __init__(self, body, d=48):
        super().__init__()
        self.embed, self.body, self.fc = nn.Conv2d(3, d, 4, 4), body, nn.Linear(d, 10)

    def forward(self, x):
        return self.fc(self.body(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


class Gelus(nn.Module):
    def __init__(self, approximate):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(approximate=approximate), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


class ChannelsFirstNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 16, 3, 2, 1), arch.LayerNorm2d(16)

    def forward(self, x):
        y = self.conv(x)
        return (y + self.norm(y)).mean((2, 3))


BLOCKS = {
    "layernorm-channels-first": ChannelsFirstNorm,
    "layernorm-channels-last": lambda: nn.Sequential(ChannelsLast(16), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    "gelu-erf": lambda: Gelus("none"),
    "gelu-tanh": lambda: Gelus("tanh"),
    "attention-hand-written": lambda: Tokens(arch.HandBlock(48, 4, 96)),
    "attention-encoder-layer": lambda: Tokens(nn.TransformerEncoderLayer(48, 4, 96, batch_first=True, norm_first=True)),
    "attention-multihead-unfold-fold": lambda: nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1), arch.MobileViTBlock(24, 32),
                                                             nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    "convnext": arch.ConvNeXt,
    # tokens as many as their width (64 x 64): onnx2tf cannot tell such a tensor from its transpose
    "vit-square-tokens": arch.ViTTiny,
    "attention-encoder-layer-post-norm": lambda: Tokens(nn.TransformerEncoderLayer(64, 4, 96, batch_first=True), d=64),
    "efficientformer-hybrid": arch.EfficientFormer,
    # 256 tokens: onnxsim writes the second block's linears 2-D, so its heads start from a 2-D tensor
    "vit-64px": arch.ViTTiny,
    # 32 channels on a 32x32 map, with LayerNorm scales and layer scales that are not 1 (trained):
    # onnx2tf placed such a [1, C, 1, 1] constant along the height until they became 1x1 convolutions
    "convnext-64px-trained-scales": lambda: _scrambled_scales(arch.ConvNeXt()),
}
SIZES = {"vit-64px": 64, "convnext-64px-trained-scales": 64}


def _scrambled_scales(model: nn.Module) -> nn.Module:
    """``model`` with every 1-D parameter (LayerNorm weights and biases, layer scales, biases) drawn
    at random, as training leaves them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 if name.endswith("bias") else
                        torch.rand(p.shape, generator=g) * 1.5 + 0.25)
    return model


def _ops_and_outputs(conv, x: torch.Tensor) -> tuple[set[str], np.ndarray]:
    """The float TFLite's operator names, and its outputs on NCHW ``x`` (one sample at a time)."""
    graph = FloatGraph(conv.tflite)
    it = interpreter(conv.tflite)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for xi in to_model_layout(x.numpy(), conv.layout):
        it.set_tensor(inp["index"], xi[None])
        it.invoke()
        got.append(it.get_tensor(out["index"])[0])
    return {graph.op_type(k) for k in range(len(graph.sg.operators))}, np.stack(got)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_each_block_converts_to_builtins_only_and_agrees_with_pytorch(tmp_path, name):
    torch.manual_seed(0)
    model = BLOCKS[name]().eval()
    split_attention(model)
    x = torch.randn(4, 3, SIZES.get(name, 32), SIZES.get(name, 32))
    conv = convert_float(model, x[:1], tmp_path, samples=x.numpy())
    ops, got = _ops_and_outputs(conv, x)
    assert not {"CUSTOM", "FLEX"} & ops and not any(o.startswith("Flex") for o in ops), ops
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), name
    if name.startswith("gelu"):
        assert ("GELU" in ops) == (name == "gelu-erf") or "TANH" in ops
    if name.startswith("layernorm") or name == "convnext":  # 1 / sqrt as RSQRT: TFLM has no int8 SQRT
        assert "RSQRT" in ops and not {"SQRT", "DIV"} & ops, ops


def test_gelu_for_a_runtime_without_it_is_the_tanh_form_and_says_so(tmp_path):
    from edgepack.convert.onnx_rewrites import TANH_GELU

    x64 = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    gap = float((nn.functional.gelu(x64) - nn.functional.gelu(x64, approximate="tanh")).abs().max())
    assert 4.7e-4 < gap < 4.8e-4  # the figure rw.TANH_GELU's comment states
    torch.manual_seed(0)
    model, x = Gelus("none").eval(), torch.randn(4, 3, 32, 32)
    conv = convert_float(model, x[:1], tmp_path, samples=x.numpy(), runtime="tflm")
    ops, got = _ops_and_outputs(conv, x)
    assert "GELU" not in ops and "TANH" in ops, ops
    assert len(conv.notes) == 1 and TANH_GELU in conv.notes[0] and "TFLM has no GELU" in conv.notes[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert 0 < np.abs(got - want).max() < 1e-3
    # the same model for LiteRT keeps the builtin GELU and says nothing
    assert convert_float(model, x[:1], tmp_path / "litert", samples=x.numpy()).notes == ()


def test_a_six_dimensional_transpose_for_tflm_is_refused_in_one_line_that_says_why(tmp_path):
    from edgepack.devices.tflm import tflm_interpreter
    from edgepack.errors import ConversionError

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1), arch.MobileViTBlock(24, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    split_attention(model)
    x = torch.randn(2, 3, 32, 32)
    conv = convert_float(model, x[:1], tmp_path, samples=x.numpy(), runtime="tflm")
    with pytest.raises(ConversionError) as e:
        tflm_interpreter(conv.tflite)
    msg = str(e.value)
    assert "\n" not in msg and "at most 5 dimensions" in msg and "patch" in msg and "LiteRT" in msg


def test_an_int8_operator_tflm_has_only_in_float_is_named_in_one_line(tmp_path):
    from edgepack.compress.quantize.converter import QuantSpec, quantize_int8
    from edgepack.devices.tflm import run_tflm
    from edgepack.errors import ConversionError

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return torch.sqrt(self.conv(x).abs() + 1.0).mean((2, 3))

    x = torch.randn(16, 3, 16, 16)
    conv = convert_float(Root().eval(), x[:1], tmp_path)
    int8 = quantize_int8(conv.saved_model_dir, to_model_layout(x.numpy(), conv.layout), QuantSpec())
    with pytest.raises(ConversionError) as e:
        run_tflm(int8, to_model_layout(x.numpy()[:1], conv.layout))
    msg = str(e.value)
    assert "\n" not in msg and "SQRT kernel" in msg and "float32 only, not int8" in msg and "LiteRT" in msg


class Erfs(nn.Module):
    """erf alone (not a GELU): TFLite has no builtin for it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.erf(self.conv(x)).mean((2, 3))


def test_an_operator_tflite_has_no_builtin_for_is_named_unless_the_runtime_has_flex(tmp_path):
    from edgepack.errors import ConversionError

    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ConversionError) as e:
        convert_float(Erfs().eval(), x[:1], tmp_path / "builtins", samples=x.numpy())
    msg = str(e.value)
    assert "\n" not in msg and "operator(s) Erf" in msg and "runtime.flex" in msg
    flex = convert_float(Erfs().eval(), x[:1], tmp_path / "flex", samples=x.numpy(), flex=True).tflite
    graph = FloatGraph(flex)
    assert "CUSTOM" in {graph.op_type(k) for k in range(len(graph.sg.operators))} and b"FlexErf" in flex
    with pytest.raises(ConversionError, match="Select TF .Flex. operators, which this machine's LiteRT cannot run"):
        interpreter(flex)
