"""Inference modes (quantization.optimize_for_inference): bf16, int8, compile, and the errors of the combinations
that cannot work here. Tiny random models: the agreement thresholds are for those, a weak proxy for the trained
600M model (whose figures come from benchmarks/run.py), so they are set loose enough to be honest, not tight."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import w2vbert
from conftest import random_batch, tiny_config_kwargs
from w2vbert.loading import devices
from w2vbert.model.layers import PointwiseConv1d
from w2vbert.model.quantization import (
    INT8_DOT_PRODUCT,
    OneDNNInt8Linear,
    drop_file_pages,
    file_mappings,
    optimize_for_inference,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# oneDNN's full-range int8 matmul is only right with an int8 dot-product unit (quantization.INT8_DOT_PRODUCT)
int8_dot = pytest.mark.skipif(
    not any(devices.cpu_features()[name] for name in INT8_DOT_PRODUCT),
    reason="needs a CPU with AMX-INT8 or VNNI (without them int8 with bfloat16 activations is refused)",
)


def tiny_model(**overrides) -> w2vbert.Wav2Vec2BertModel:
    torch.manual_seed(0)
    # Wider than conftest's tiny config so int8's per-tensor rounding averages out as in real layer sizes.
    kwargs = tiny_config_kwargs(**(dict(hidden_size=128, intermediate_size=256, num_attention_heads=4) | overrides))
    return w2vbert.Wav2Vec2BertModel(w2vbert.Wav2Vec2BertConfig(**kwargs)).eval()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


def last_hidden(model, features, mask=None) -> torch.Tensor:
    with torch.inference_mode():
        return model(features, attention_mask=mask).last_hidden_state.float()


def test_bfloat16_output_stays_close_to_float32():
    model = tiny_model()
    features, mask = random_batch([60, 45])
    expected = last_hidden(model, features, mask)
    fast = optimize_for_inference(copy.deepcopy(model), dtype="bfloat16")
    assert fast.dtype == torch.bfloat16
    actual = last_hidden(fast, features.bfloat16(), mask)
    assert cosine(actual[0], expected[0]) > 0.999  # bf16 keeps 8 bits of mantissa: ~1e-3 relative per op
    assert cosine(actual[1, :45], expected[1, :45]) > 0.999


BFLOAT16_DEMO_SIZE_RUN = """
import torch, w2vbert
torch.set_num_threads(2)
torch.manual_seed(0)
config = w2vbert.Wav2Vec2BertConfig(hidden_size=144, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=288, conv_depthwise_kernel_size=15)
model = w2vbert.Wav2Vec2BertModel(config).eval().to(torch.bfloat16)
with torch.inference_mode():
    for frames in (42, 44, 72, 80):  # lengths where oneDNN's bf16 channels-last depthwise convolution hung
        model(torch.randn(1, frames, 160, dtype=torch.bfloat16))
print("ok")
"""


def test_bfloat16_forward_returns_for_the_demo_model_size_on_two_threads():
    # The shipped demo model (144 channels, kernel 15) never returned from some bfloat16 forwards on an AMX CPU
    # with 2 threads (oneDNN's channels-last depthwise convolution); run in a child so that a hang fails the test.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", BFLOAT16_DEMO_SIZE_RUN], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_int8_quantizes_every_matmul_and_stays_close_to_float32():
    model = tiny_model()
    features, mask = random_batch([60, 45])
    expected = last_hidden(model, features, mask)
    quantized = optimize_for_inference(copy.deepcopy(model), quantize="int8")
    assert not any(type(m) is torch.nn.Linear for m in quantized.modules())  # no float Linear left behind
    conv = quantized.encoder.layers[0].conv_module
    assert type(conv.pointwise_conv1) is PointwiseConv1d  # kept float: it feeds the GLU gate (accuracy)
    actual = last_hidden(quantized, features, mask)
    # Measured 0.998-0.999 on this 2-layer random model; 0.99 is the bound issue 6 sets for the real model.
    assert cosine(actual[0], expected[0]) > 0.99
    assert cosine(actual[1, :45], expected[1, :45]) > 0.99


def test_int8_does_not_change_the_global_quantization_engine():
    before = torch.backends.quantized.engine
    optimize_for_inference(tiny_model(), quantize="int8")
    assert torch.backends.quantized.engine == before


def test_float32_optimize_is_the_same_model_and_numbers():
    model = tiny_model()
    features, _ = random_batch([30])
    expected = last_hidden(model, features)
    assert optimize_for_inference(model) is model
    torch.testing.assert_close(last_hidden(model, features), expected, atol=0, rtol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_float16_on_cpu_is_refused_pointing_to_bfloat16():
    with pytest.raises(ValueError, match="float16 inference needs a CUDA device.*bfloat16"):
        optimize_for_inference(tiny_model(), dtype=torch.float16)


def test_int8_with_float16_on_cpu_is_refused_pointing_to_bfloat16():
    with pytest.raises(ValueError, match="float16 inference needs a CUDA device.*bfloat16"):
        optimize_for_inference(tiny_model(), dtype="float16", quantize="int8")


@int8_dot
def test_int8_with_bfloat16_runs_every_matmul_as_onednn_int8_and_stays_close_to_float32():
    model = tiny_model()
    features, mask = random_batch([60, 45])
    expected = last_hidden(model, features, mask)
    quantized = optimize_for_inference(copy.deepcopy(model), dtype="bfloat16", quantize="int8")
    kinds = {type(m) for m in quantized.modules()}
    assert torch.nn.Linear not in kinds and OneDNNInt8Linear in kinds and quantized.dtype == torch.bfloat16
    conv = quantized.encoder.layers[0].conv_module
    assert type(conv.pointwise_conv1) is PointwiseConv1d and conv.pointwise_conv1.weight.dtype == torch.bfloat16
    ffn = quantized.encoder.layers[0].ffn1
    assert ffn.intermediate_dense.post_op == "swish" and type(ffn.intermediate_act_fn) is torch.nn.Identity
    actual = last_hidden(quantized, features.bfloat16(), mask)
    # 0.99 is issue 19's bound; the full-size CTC logits on speech measured 0.998 (benchmarks/NOTES.md, "int8").
    assert cosine(actual[0], expected[0]) > 0.99
    assert cosine(actual[1, :45], expected[1, :45]) > 0.99


def dequantized_reference(layer: torch.nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """What the int8 matmul computes, in float64: per-channel int8 weights, the input rounded to 256 levels."""
    weight = layer.weight.double()
    scale = weight.abs().amax(dim=1, keepdim=True) / 127
    weight = torch.round(weight / scale).clamp(-127, 127) * scale
    low, high = min(float(inputs.min()), 0.0), max(float(inputs.max()), 0.0)
    step = (high - low) / 255
    zero = round(-low / step)
    levels = (torch.round(inputs.double() / step) + zero).clamp(0, 255)
    return torch.nn.functional.linear((levels - zero) * step, weight, layer.bias.double())


@int8_dot
@settings(max_examples=20, deadline=None, derandomize=True)
@given(rows=st.integers(0, 9), scale=st.floats(1e-3, 1e3), shift=st.floats(-2, 2))
def test_onednn_int8_linear_is_the_int8_matmul_of_its_input_at_any_scale_and_row_count(rows, scale, shift):
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 16)
    inputs = (torch.randn(rows, 3, 32) + shift) * scale
    with torch.no_grad():
        actual = OneDNNInt8Linear(layer, torch.float32)(inputs)
    assert actual.shape == (rows, 3, 16) and actual.dtype == torch.float32
    if rows:  # the same integer matmul up to float32 accumulation and output rounding
        expected = dequantized_reference(layer, inputs.reshape(-1, 32)).reshape(rows, 3, 16)
        torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@int8_dot
def test_onednn_int8_siblings_share_one_input_quantization_but_never_a_stale_one():
    torch.manual_seed(0)
    first, second = torch.nn.Linear(32, 16), torch.nn.Linear(32, 16)
    shared: dict = {}
    a, b = OneDNNInt8Linear(first, torch.float32, shared), OneDNNInt8Linear(second, torch.float32, shared)
    alone = OneDNNInt8Linear(second, torch.float32)
    x, y = torch.randn(5, 32), 3 * torch.randn(5, 32)
    with torch.no_grad():
        a(x)
        torch.testing.assert_close(b(y), alone(y), rtol=0, atol=0)  # another tensor: quantized afresh
        a(x)
        torch.testing.assert_close(b(x), alone(x), rtol=0, atol=0)  # the same tensor: the shared codes
        x.mul_(2)  # changed in place since: the shared codes are stale
        torch.testing.assert_close(b(x), alone(x), rtol=0, atol=0)
        torch.testing.assert_close(a(x), OneDNNInt8Linear(first, torch.float32)(x), rtol=0, atol=0)
        a(torch.randn(5, 32))  # an input that is gone at once: its codes are not kept (full size: 0.43 GB at 40 s)
    assert not shared


@int8_dot
def test_from_pretrained_int8_with_bfloat16_quantizes_from_the_float32_file(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    features, mask = random_batch([60, 45])
    loaded = w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16, quantize="int8")
    expected = last_hidden(optimize_for_inference(copy.deepcopy(model), dtype="bfloat16", quantize="int8"),
                           features.bfloat16(), mask)
    # int8 weights from the float32 file, not from a bfloat16 rounding of it: the same numbers as converting the
    # float32 model in memory
    torch.testing.assert_close(last_hidden(loaded, features.bfloat16(), mask), expected, atol=0, rtol=0)
    assert loaded.dtype == torch.bfloat16
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            assert str(tmp_path / "model.safetensors") not in maps.read()


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.text(max_size=8), st.sampled_from(["int4", "fp8", "INT8", "nf4"])))
def test_unknown_quantize_or_dtype_names_are_rejected(name):
    model = torch.nn.Linear(2, 2)
    if name != "int8":
        with pytest.raises(ValueError, match="quantize must be one of"):
            optimize_for_inference(model, quantize=name)
    if name not in ("float32", "bfloat16", "float16"):
        with pytest.raises(ValueError, match="dtype must be one of"):
            optimize_for_inference(model, dtype=name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_load_in_8bit_on_cpu_says_it_needs_cuda_and_what_to_use_instead(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="load_in_8bit=True .* needs device='cuda'.*quantize='int8'"):
        w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, load_in_8bit=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_bitsandbytes_replacement_without_cuda_is_a_clear_error():
    from w2vbert.model.quantization import replace_with_bnb_linear

    with pytest.raises(RuntimeError, match="needs a CUDA GPU and bitsandbytes"):
        replace_with_bnb_linear(tiny_model())


def test_from_pretrained_quantize_int8_loads_a_quantized_model(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    features, _ = random_batch([40])
    loaded = w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, quantize="int8")
    assert cosine(last_hidden(loaded, features), last_hidden(model, features)) > 0.99
    # Nothing of the int8 model points into the checkpoint's memory map any more, so the float32 file's pages,
    # all read while quantizing, are no longer held: at full size 1.73 GB resident after loading, not 3.36 GB.
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            assert str(tmp_path / "model.safetensors") not in maps.read()


BFLOAT16_LOAD_PEAK = """
import sys, torch, w2vbert
def status(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))
open("/proc/self/clear_refs", "w").write("5")  # the high-water mark restarts here, after the imports
before = status("VmRSS:")
model = w2vbert.Wav2Vec2BertModel.from_pretrained(sys.argv[1], torch_dtype=torch.bfloat16)
print(status("VmHWM:") - before)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_from_pretrained_in_bfloat16_never_holds_the_whole_float32_file_beside_the_copy(tmp_path):
    import subprocess
    import sys

    model = tiny_model(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8)
    model.save_pretrained(tmp_path)
    features, mask = random_batch([60, 45])
    expected = last_hidden(copy.deepcopy(model).to(torch.bfloat16), features.bfloat16(), mask)
    loaded = w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    torch.testing.assert_close(last_hidden(loaded, features.bfloat16(), mask), expected, atol=0, rtol=0)
    assert {t.dtype for t in loaded.parameters()} == {torch.bfloat16}
    # Converted module by module with each one's file pages handed back, the load's peak stays near the file's
    # size where converting the whole float32 map held file + copy and more (2.1x the file here; full size
    # 3.81 GB against float32's 2.71 GB: benchmarks/int8_memory.py --modes fp32,bf16).
    size = (tmp_path / "model.safetensors").stat().st_size
    done = subprocess.run([sys.executable, "-c", BFLOAT16_LOAD_PEAK, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=True)
    assert int(done.stdout.strip().splitlines()[-1]) < 1.3 * size  # measured 1.14x here; 2.1x before


def whole_model_int8(model: torch.nn.Module) -> torch.nn.Module:
    """The int8 conversion as it was before block-by-block loading: one quantize_dynamic over the whole model."""
    from w2vbert.model.quantization import int8_engine

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = int8_engine()  # the engine from_pretrained packs with
    try:
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    finally:
        torch.backends.quantized.engine = previous


def test_int8_loading_block_by_block_gives_the_whole_model_quantize_numbers_and_keeps_no_float_linear(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    features, mask = random_batch([60, 45])
    expected = last_hidden(whole_model_int8(copy.deepcopy(model)), features, mask)
    loaded = w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, quantize="int8")
    torch.testing.assert_close(last_hidden(loaded, features, mask), expected, atol=0, rtol=0)
    assert not any(type(m) is torch.nn.Linear for m in loaded.modules())
    # What float tensors remain (norms, convolutions, the quantized layers' biases) are copies, none in the file.
    mappings = file_mappings()
    for name, tensor in list(loaded.named_parameters()) + list(loaded.named_buffers()):
        start = tensor.data_ptr()
        assert not any(low <= start < high for low, high in mappings), f"{name} still points into a file map"


def mapped_resident_bytes(path) -> int:
    """Resident bytes of this process's maps of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc/self/smaps")
def test_drop_file_pages_drops_a_read_checkpoints_pages_and_leaves_anonymous_memory_alone(tmp_path):
    from safetensors.torch import load_file, save_file

    path = tmp_path / "weights.safetensors"
    save_file({"a": torch.randn(1024, 1024), "b": torch.randn(1024, 1024)}, path)  # 4 MiB each
    weights = load_file(path)
    total = float(weights["a"].sum() + weights["b"].sum())  # reads every page
    assert mapped_resident_bytes(path) >= 8 * 2**20 - 2 * 4096
    copy_of_b = weights["b"].clone()
    drop_file_pages([weights["a"], copy_of_b], file_mappings())
    assert mapped_resident_bytes(path) <= 4 * 2**20 + 2 * 4096  # a's pages went, b's stay
    torch.testing.assert_close(copy_of_b, weights["b"], atol=0, rtol=0)  # the anonymous copy kept its values
    assert float(weights["a"].sum() + weights["b"].sum()) == total  # a dropped page reads back from the file


@pytest.mark.slow
def test_compiled_model_gives_the_eager_numbers():
    model = tiny_model(num_hidden_layers=1)
    features, _ = random_batch([30])
    expected = last_hidden(model, features)
    compiled = optimize_for_inference(model, compile=True)
    torch.testing.assert_close(last_hidden(compiled, features), expected, atol=1e-5, rtol=1e-5)


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda_stays_close_to_float32(dtype):
    model = tiny_model().cuda()
    features, _ = random_batch([50])
    expected = last_hidden(model, features.cuda())
    fast = optimize_for_inference(copy.deepcopy(model), dtype=dtype)
    assert cosine(last_hidden(fast, features.cuda().to(dtype)), expected) > 0.999


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda_with_the_real_layer_sizes(dtype):
    """One block of the 600M config on 500 frames without padding (a 10 s clip) in half precision: on an H100 the
    strided position-bias view made CUDA's attention kernel fail (cudaErrorMisalignedAddress, then
    CUBLAS_STATUS_EXECUTION_FAILED) until GPUs got a contiguous copy of the bias; this test failed without it."""
    torch.manual_seed(0)
    model = w2vbert.Wav2Vec2BertModel(w2vbert.Wav2Vec2BertConfig(num_hidden_layers=1)).eval().cuda()
    features, _ = random_batch([500])
    expected = last_hidden(model, features.cuda())
    fast = optimize_for_inference(copy.deepcopy(model), dtype=dtype)
    assert cosine(last_hidden(fast, features.cuda().to(dtype)), expected) > 0.999


@cuda
def test_load_in_8bit_on_cuda_uses_bitsandbytes(tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    model = tiny_model()
    model.save_pretrained(tmp_path)
    features, _ = random_batch([50])
    expected = last_hidden(model, features)
    loaded = w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, device="cuda", load_in_8bit=True)
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in loaded.modules())
    assert cosine(last_hidden(loaded, features.cuda().half()).cpu(), expected) > 0.99


def test_the_int8_engine_can_be_named_and_a_name_this_build_lacks_is_refused_listing_its_engines(monkeypatch):
    from w2vbert.model.quantization import INT8_ENGINE_VARIABLE, int8_engine

    engines = torch.backends.quantized.supported_engines
    monkeypatch.delenv(INT8_ENGINE_VARIABLE, raising=False)
    assert int8_engine() in engines
    monkeypatch.setenv(INT8_ENGINE_VARIABLE, "fbgemm")
    if "fbgemm" in engines:
        assert int8_engine() == "fbgemm"
    monkeypatch.setenv(INT8_ENGINE_VARIABLE, "abacus")
    with pytest.raises(ValueError, match=r"W2VBERT_INT8_ENGINE='abacus': this PyTorch build has the engines"):
        int8_engine()


@pytest.mark.parametrize("dtype", ["float32", pytest.param("bfloat16", marks=int8_dot)])
def test_an_int8_model_is_not_saved_as_a_checkpoint_missing_its_weights(tmp_path, dtype):
    quantized = optimize_for_inference(tiny_model(), dtype=dtype, quantize="int8")
    with pytest.raises(ValueError, match="holds int8 weights packed for inference.*save the float model"):
        quantized.save_pretrained(tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_int8_with_bfloat16_is_refused_on_a_cpu_without_an_int8_dot_product_unit(monkeypatch):
    avx2_only = {name: name == "avx2" for name in devices.CPU_FEATURES}
    monkeypatch.setattr(devices, "cpu_features", lambda: avx2_only)
    with pytest.raises(ValueError, match="needs a CPU with an int8 dot-product unit.*use dtype=float32"):
        optimize_for_inference(tiny_model(), dtype="bfloat16", quantize="int8")
    optimize_for_inference(tiny_model(), dtype="float32", quantize="int8")  # PyTorch's own int8 stays available
