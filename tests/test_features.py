"""`SeamlessM4TFeatureExtractor`: transformers' numbers on real speech, batched, plus what transformers cannot do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import w2vbert
from w2vbert import SeamlessM4TFeatureExtractor, load_audio

DATA = Path(__file__).parent / "data"
ATOL = 1e-4  # the bound; measured differences are ~1e-6


def speech(name: str) -> np.ndarray:
    return load_audio(DATA / name)


@pytest.fixture(scope="module")
def extractors():
    import transformers

    return SeamlessM4TFeatureExtractor(padding_value=1.0), transformers.SeamlessM4TFeatureExtractor(padding_value=1.0)


# Batching changes the row count of the float32 mel matmul (B * frames, 514) @ (514, 80), and BLAS may then sum a
# row's 514 products in another order: MKL's AVX2 sgemm does (seen: 1.2e-6 relative in the mel energies, and 1.05e-5
# in the normalised features of a 3-frame clip, which failed a fixed 1e-5 bound); on AVX-512 it is bit-identical.
# So "batching changes nothing" holds up to these bounds, derived from float32 rounding, not measured.
def log_mel_rounding(logmel: np.ndarray) -> float:
    """Bound on |batched - alone| of a clip's log-mel (frames, 80) before normalisation.

    Any order of K non-negative products is within gamma_K = K u / (1 - K u) of the exact sum (u = 2**-24, K = 514;
    Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.1): two orders differ by 2 gamma_K
    relative, which is that much absolute in the log; plus 2 u for an input rounding to float32 differently, and
    one float32 ulp of the log on either side.
    """
    u, k = 2.0**-24, 514
    return 2 * k * u / (1 - k * u) + 2 * u + 2 * 2.0**-23 * float(np.abs(logmel).max())


def normalised_rounding(logmel: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Bound on |batched - alone| of each normalised feature z (frames, 80), given the clip's log-mel.

    z = (x - mean) / s with s = sqrt(var + 1e-7): moving each x by at most delta moves x - mean by 2 delta and s by
    at most 3 delta (s is 1/sqrt(n - 1)-Lipschitz in the n deviations), hence |dz| <= delta (2 + 3 |z|) /
    (s - 3 delta), plus z's own float32 rounding on either side. Few frames with a near-constant bin make s small
    and the bound wide there; a padded frame leaking into a clip's frames or statistics moves z by far more.
    """
    delta = log_mel_rounding(logmel)
    s = np.sqrt(logmel.astype(np.float64).var(axis=0, ddof=1) + 1e-7)  # (80,)
    return delta * (2 + 3 * np.abs(z)) / (s - 3 * delta) + 2.0**-22 * np.abs(z)


def assert_batching_changes_only_rounding(extractor, batched, batched_logmel, clip, frames):
    """One clip's (steps, 160) features from a batch, normalised and not, equal the clip's alone up to rounding."""
    kwargs = dict(sampling_rate=16000, return_tensors="np")
    alone = extractor(clip, **kwargs)["input_features"][0]
    logmel = extractor(clip, do_normalize_per_mel_bins=False, **kwargs)["input_features"][0]
    # (steps, 160) -> (2 steps, 80): the frames, then the padding of an odd frame count
    batched, batched_logmel = (np.asarray(b[: len(alone)]).reshape(-1, 80) for b in (batched, batched_logmel))
    alone, logmel = alone.reshape(-1, 80), logmel.reshape(-1, 80)
    assert np.abs(batched_logmel[:frames] - logmel[:frames]).max() <= log_mel_rounding(logmel[:frames])
    excess = np.abs(batched[:frames] - alone[:frames]) - normalised_rounding(logmel[:frames], alone[:frames])
    assert excess.max() <= 0, f"batched features differ beyond float32 rounding by up to {excess.max():.3g}"
    np.testing.assert_array_equal(batched[frames:], alone[frames:])


def assert_same(ours, theirs):
    assert ours["input_features"].shape == theirs["input_features"].shape
    np.testing.assert_allclose(
        np.asarray(ours["input_features"]), np.asarray(theirs["input_features"]), atol=ATOL, rtol=0
    )
    np.testing.assert_array_equal(np.asarray(ours["attention_mask"]), np.asarray(theirs["attention_mask"]))


# hello: 17383 samples = 107 frames (odd); quick.wav: 43870 = 272 frames (even); the others are resampled from
# 22.05-48 kHz, and lossy ones (MP3: its top band is empty) have the quietest bins, where rounding shows most.
@pytest.mark.parametrize(
    "name",
    [
        "hello.wav",
        "quick.wav",
        "numbers.wav",
        "short.wav",
        "quick_44k.flac",
        "quick_22k.mp3",
        "quick_24k.m4a",
        "quick_48k.webm",
        "quick_48k_stereo.ogg",
    ],
)
def test_single_clip_equals_transformers_on_speech(extractors, name):
    ours, theirs = extractors
    audio = speech(name)
    assert_same(
        ours(audio, sampling_rate=16000, return_tensors="np"), theirs(audio, sampling_rate=16000, return_tensors="np")
    )


@pytest.mark.parametrize("pad_to_multiple_of", [2, 4, None])
def test_mixed_length_batch_equals_transformers(extractors, pad_to_multiple_of):
    ours, theirs = extractors
    clips = [speech("hello.wav"), speech("quick.wav"), speech("short.wav")[:5000], speech("numbers.wav")]
    kwargs = dict(sampling_rate=16000, padding=True, return_tensors="pt", pad_to_multiple_of=pad_to_multiple_of)
    assert_same(ours(clips, **kwargs), theirs(clips, **kwargs))


def test_a_padded_batch_tensor_with_lengths_equals_the_clips_one_by_one(extractors):
    ours, _ = extractors
    clips = [speech("hello.wav"), speech("quick.wav")]
    padded = torch.zeros(2, max(map(len, clips)))
    for row, clip in enumerate(clips):
        padded[row, : len(clip)] = torch.from_numpy(clip)
    kwargs = dict(lengths=[len(c) for c in clips], sampling_rate=16000, return_tensors="pt")
    batch = ours(padded, **kwargs)["input_features"]
    batch_logmel = ours(padded, do_normalize_per_mel_bins=False, **kwargs)["input_features"]
    for row, clip in enumerate(clips):
        frames = (len(clip) - 400) // 160 + 1
        assert_batching_changes_only_rounding(ours, batch[row], batch_logmel[row], clip, frames)


def test_clips_shorter_than_one_window_give_zero_frames_not_a_crash(extractors):
    ours, _ = extractors
    out = ours([np.zeros(399, np.float32), speech("hello.wav")], sampling_rate=16000, return_tensors="pt")
    assert out["attention_mask"][0].sum() == 0 and out["attention_mask"][1].sum() > 0
    assert torch.isfinite(out["input_features"]).all()


def test_silence_gives_no_nan(extractors):
    ours, _ = extractors
    out = ours(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="pt")
    assert torch.isfinite(out["input_features"]).all()


def test_digital_silence_gives_exact_zeros_where_transformers_gives_its_rounding(extractors):
    # Every log-mel value is log(FLT_EPSILON): the per-bin variance is 0 and (x - mean) must be 0. transformers'
    # float32 mean of equal values is off by an ulp, which its sqrt(0 + 1e-7) divisor turns into ~3e-3.
    ours, theirs = extractors
    silence = np.zeros(16000, np.float32)
    out = ours(silence, sampling_rate=16000, return_tensors="np")["input_features"]
    reference = theirs(silence, sampling_rate=16000, return_tensors="np")["input_features"]
    assert np.all(out == 0.0) and np.abs(reference).max() < 1e-2


@pytest.mark.parametrize("level", [1e-7, 1e-5, 1e-3])
def test_near_silence_equals_transformers(extractors, level):
    # Near one 16-bit step (3e-5) and below, mel energies come close to the FLT_EPSILON floor before the log.
    ours, theirs = extractors
    rng = np.random.default_rng(0)
    audio = (level * rng.standard_normal(16000)).astype(np.float32)
    assert_same(
        ours(audio, sampling_rate=16000, return_tensors="np"), theirs(audio, sampling_rate=16000, return_tensors="np")
    )


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    # 25 frames at least: with 2 or 3 frames a bin's two values can differ by 1e-3, and transformers' float32
    # mean and variance then move its normalised values by as much (seen: 1.6e-3 on 622 samples, old code too).
    samples=st.integers(4240, 12000),
    amplitude=st.sampled_from([1e-4, 1e-2, 0.5]),
    offset=st.sampled_from([0.0, 1e-3, 0.2]),
    tone_hz=st.floats(25.0, 7990.0),
)
def test_speech_like_signals_equal_transformers(extractors, seed, samples, amplitude, offset, tone_hz):
    # Noise under a random envelope (so every mel bin varies over the frames, as in speech), a tone, a DC offset.
    ours, theirs = extractors
    rng = np.random.default_rng(seed)
    envelope = np.repeat(rng.uniform(0.05, 1.0, samples // 400 + 1), 400)[:samples]
    t = np.arange(samples) / 16000
    audio = amplitude * (envelope * rng.standard_normal(samples) + 0.5 * np.sin(2 * np.pi * tone_hz * t)) + offset
    audio = np.clip(audio, -1, 1).astype(np.float32)
    assert_same(
        ours(audio, sampling_rate=16000, return_tensors="np"), theirs(audio, sampling_rate=16000, return_tensors="np")
    )


def test_original_fairseq2_mode_drops_the_odd_frame_and_pads_with_one():
    odd = speech("hello.wav")  # 107 frames
    original = SeamlessM4TFeatureExtractor(original=True)
    hf = SeamlessM4TFeatureExtractor(padding_value=1.0)
    a = original(odd, sampling_rate=16000, return_tensors="pt")
    b = hf(odd, sampling_rate=16000, return_tensors="pt")
    assert a["input_features"].shape[1] == 53 and b["input_features"].shape[1] == 54
    assert original.padding_value == 1.0
    # Same statistics up to the missing epsilon: the first 53 steps agree closely.
    torch.testing.assert_close(a["input_features"][0], b["input_features"][0, :53], atol=1e-3, rtol=0)


def test_preprocessor_config_round_trips_with_transformers(tmp_path):
    import transformers

    SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(tmp_path / "ours")
    theirs = transformers.SeamlessM4TFeatureExtractor.from_pretrained(tmp_path / "ours")
    assert theirs.padding_value == 1.0 and theirs.stride == 2 and theirs.num_mel_bins == 80
    theirs.save_pretrained(tmp_path / "theirs")
    back = SeamlessM4TFeatureExtractor.from_pretrained(tmp_path / "theirs")
    assert back.padding_value == 1.0 and back.to_dict()["feature_extractor_type"] == "SeamlessM4TFeatureExtractor"
    assert json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())["sampling_rate"] == 16000


@pytest.mark.parametrize(
    ("audio", "kwargs", "error", "message"),
    [
        (np.array([0.0, np.nan] * 500, np.float32), {}, ValueError, "NaN or infinite"),
        (np.zeros(1000, np.float32), {"sampling_rate": 8000}, ValueError, "at 8000 Hz given to a feature extractor"),
        (np.zeros((2, 3, 4, 5), np.float32), {}, ValueError, "expected audio of shape"),
        ([], {}, ValueError, "^no clips: got an empty list"),
        (np.zeros((0, 16000), np.float32), {}, ValueError, r"^no clips: got a batch of shape \(0, 16000\)"),
        (torch.zeros(0, 16000), {}, ValueError, r"^no clips: got a batch of shape \(0, 16000\)"),
        (np.zeros((0, 2, 16000), np.float32), {}, ValueError, r"^no clips: got a batch of shape \(0, 2, 16000\)"),
        ("speech.wav", {}, TypeError, "decode files with w2vbert.load_audio"),
    ],
)
def test_bad_input_is_refused_clearly(audio, kwargs, error, message):
    with pytest.raises(error, match=message):
        SeamlessM4TFeatureExtractor()(audio, **({"sampling_rate": 16000} | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampling_rate": 0}, "sampling_rate must be a positive whole number of Hz"),
        ({"sampling_rate": -16000}, "sampling_rate must be a positive whole number of Hz"),
        ({"sampling_rate": 0.5}, "sampling_rate must be a positive whole number of Hz"),
        ({"num_mel_bins": 0, "feature_size": 0}, "num_mel_bins must be a positive integer"),
        ({"num_mel_bins": -80, "feature_size": -80}, "num_mel_bins must be a positive integer"),
        ({"feature_size": 0}, "feature_size must be a positive integer"),
        ({"stride": 0}, "stride must be >= 1"),
    ],
)
def test_impossible_settings_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        SeamlessM4TFeatureExtractor(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_a_cuda_device_without_cuda_is_refused_in_one_line(device):
    with pytest.raises(ValueError, match=r"^device='cuda(:0)?': CUDA is not available \(.*\); use device='cpu'$"):
        SeamlessM4TFeatureExtractor()(np.zeros(16000, np.float32), sampling_rate=16000, device=device)


def test_samples_far_outside_one_are_refused_naming_the_clips_instead_of_giving_nan_features():
    # Finite samples whose float32 power spectrum overflows (from ~1e12 on) gave inf/NaN features before.
    ok = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    clips = [ok, ok * 2e30, ok, ok * 2e15]
    expected = r"^audio clip\(s\) \[1, 3\] give inf/NaN features: their samples reach a magnitude of 1e\+30, 1e\+15, "
    with pytest.raises(ValueError, match=expected + r"far outside \[-1, 1\]"):
        SeamlessM4TFeatureExtractor()(clips, sampling_rate=16000)
    with pytest.raises(ValueError, match=expected):
        SeamlessM4TFeatureExtractor()(np.stack(clips), sampling_rate=16000)  # the padded-batch path
    # int16 values passed as floats (up to 32767) are a mistake, but their features stay finite: no error here.
    out = SeamlessM4TFeatureExtractor()(ok * 65534, sampling_rate=16000, return_tensors="np")["input_features"]
    assert np.isfinite(out).all()


def test_the_rate_error_suggests_a_call_that_works():
    extractor = SeamlessM4TFeatureExtractor()
    audio_8k = np.sin(np.linspace(0, 2000, 8000)).astype(np.float32)
    with pytest.raises(ValueError) as error:
        extractor(audio_8k, sampling_rate=8000)
    suggestion = re.search(r"e\.g\. (w2vbert\.load_audio\(path_or_array, [^)]*\))", str(error.value)).group(1)
    resampled = eval(suggestion, {"w2vbert": w2vbert, "path_or_array": audio_8k})  # the call exactly as suggested
    assert len(resampled) == 16000
    assert extractor(resampled, sampling_rate=16000, return_tensors="np")["input_features"].shape == (1, 49, 160)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, 6000), min_size=1, max_size=4))
def test_frame_counts_follow_kaldi_and_batching_changes_nothing(lengths):
    extractor = SeamlessM4TFeatureExtractor(padding_value=1.0)
    rng = np.random.default_rng(len(lengths))
    clips = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in lengths]
    batch = extractor(clips, sampling_rate=16000, return_tensors="np")
    batch_logmel = extractor(clips, sampling_rate=16000, return_tensors="np", do_normalize_per_mel_bins=False)
    for row, (n, clip) in enumerate(zip(lengths, clips, strict=True)):
        frames = 0 if n < 400 else (n - 400) // 160 + 1
        assert int(batch["attention_mask"][row].sum()) == frames // 2  # pairs stacked; an odd frame is masked
        if frames >= 2:
            assert_batching_changes_only_rounding(
                extractor, batch["input_features"][row], batch_logmel["input_features"][row], clip, frames
            )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_features_equal_cpu_features():
    extractor = SeamlessM4TFeatureExtractor()
    audio = speech("quick.wav")
    cpu = extractor(audio, sampling_rate=16000, return_tensors="pt")["input_features"]
    gpu = extractor(audio, sampling_rate=16000, return_tensors="pt", device="cuda")["input_features"]
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------ transformers' API: files and ragged pad
def test_to_json_file_and_from_json_file_round_trip_with_transformers(tmp_path):
    import transformers

    settings = dict(feature_size=10, num_mel_bins=10, padding_value=0.5, sampling_rate=4000, do_normalize=True)
    ours, theirs = SeamlessM4TFeatureExtractor(**settings), transformers.SeamlessM4TFeatureExtractor(**settings)
    assert ours.to_dict() == theirs.to_dict() and ours.to_json_string() == theirs.to_json_string()
    ours.to_json_file(tmp_path / "ours.json")
    theirs.to_json_file(tmp_path / "theirs.json")
    assert (tmp_path / "ours.json").read_text() == (tmp_path / "theirs.json").read_text()
    assert SeamlessM4TFeatureExtractor.from_json_file(tmp_path / "theirs.json").to_dict() == theirs.to_dict()
    assert transformers.SeamlessM4TFeatureExtractor.from_json_file(tmp_path / "ours.json").to_dict() == ours.to_dict()
    assert ours.model_input_names == theirs.model_input_names


def test_a_processor_class_in_the_config_is_dropped_on_load_as_transformers_does(tmp_path):
    import transformers

    values = {"feature_extractor_type": "SeamlessM4TFeatureExtractor", "processor_class": "Wav2Vec2BertProcessor"}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(values))
    ours = SeamlessM4TFeatureExtractor.from_pretrained(tmp_path)
    assert ours.to_dict() == transformers.SeamlessM4TFeatureExtractor.from_pretrained(tmp_path).to_dict()
    assert "processor_class" not in ours.to_dict()


def assert_same_ragged(ours, theirs):
    """transformers' unpadded batch: a 1-D object array holding each example's own array, of the same dtype."""
    assert type(ours) is type(theirs) is np.ndarray and ours.dtype == theirs.dtype == object
    assert ours.shape == theirs.shape
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=2, max_size=5).filter(lambda n: len(set(n)) > 1),
    as_lists=st.booleans(),
    with_mask=st.booleans(),
    max_length=st.one_of(st.none(), st.integers(1, 12)),
)
def test_pad_leaving_lengths_apart_gives_transformers_ragged_arrays(lengths, as_lists, with_mask, max_length):
    """padding=False, or padding="max_length" below the longest without truncation: one array per example."""
    import transformers

    ours = SeamlessM4TFeatureExtractor(padding_value=1.0)
    theirs = transformers.SeamlessM4TFeatureExtractor(padding_value=1.0)
    rng = np.random.default_rng(sum(lengths))
    features = [rng.standard_normal((n, 160)).astype(np.float32) for n in lengths]

    def examples():
        out = [{"input_features": f.tolist() if as_lists else f} for f in features]
        for item in out if with_mask else []:
            item["attention_mask"] = [1] * len(item["input_features"])
        return out

    options = {"padding": False} if max_length is None else {"padding": "max_length", "max_length": max_length}
    a, b = ours.pad(examples(), **options), theirs.pad(examples(), **options)
    assert sorted(a) == sorted(b)
    for key in b:
        if max_length is not None and max(lengths) <= max_length:  # everything padded to max_length: one array
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype
        else:
            assert_same_ragged(a[key], b[key])
    with pytest.raises(ValueError):  # a tensor cannot be ragged, in either library
        theirs.pad(examples(), return_tensors="pt", padding=False)
    with pytest.raises(ValueError, match="pad them first"):
        ours.pad(examples(), return_tensors="pt", padding=False)


# ------------------------------------------------------------------------------- fuzz findings: the argument named
NOT_A_RATE = st.one_of(st.text(max_size=5), st.just([16000]), st.binary(max_size=3), st.booleans(),
                       st.integers(max_value=999), st.integers(min_value=384_001), st.just(float("nan")))


@settings(max_examples=40, deadline=None)
@given(rate=NOT_A_RATE)
def test_a_sampling_rate_that_is_not_a_rate_is_refused_naming_the_argument(rate):
    with pytest.raises(ValueError, match="^sampling_rate must be a positive number of Hz from 1000 to 384000"):
        SeamlessM4TFeatureExtractor()(np.zeros(1000, np.float32), sampling_rate=rate)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 10_000), tensor=st.booleans())
def test_a_batch_of_clips_of_zero_samples_is_refused_naming_the_shape(batch, tensor):
    audio = torch.zeros(batch, 0) if tensor else np.zeros((batch, 0), np.float32)
    with pytest.raises(ValueError, match=rf"^raw_speech of shape \({batch}, 0\) is a batch of clips of 0 samples"):
        SeamlessM4TFeatureExtractor()(audio, sampling_rate=16000)


@pytest.mark.parametrize("audio", [
    np.array([np.zeros(100), np.zeros(200)], dtype=object),  # a ragged batch as numpy holds it
    np.array(["a", "b"], dtype=object),
    [np.zeros(500, np.float32), np.array([None] * 500)],
], ids=["ragged", "strings", "second-clip"])
def test_an_object_array_is_refused_naming_the_argument(audio):
    with pytest.raises(TypeError, match=r"^raw_speech clip \d: expected float samples, got an array of dtype object"):
        SeamlessM4TFeatureExtractor()(audio, sampling_rate=16000)
