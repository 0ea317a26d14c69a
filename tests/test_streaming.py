"""Streaming: chunked attention (model/chunking.py), cached inference (model/streaming.py), fixed feature statistics
(audio/features.py), dynamic chunk training, and the live paths that use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config_kwargs
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForCTC, Wav2Vec2BertModel
from w2vbert.model.chunking import Chunking
from w2vbert.model.streaming import StreamingEncoder


def chunked_ctc(chunk: int | None, left: int | None = None, adapter: bool = False, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(
        add_adapter=adapter, streaming_chunk_size=chunk, streaming_left_chunks=left, **overrides
    ))
    return Wav2Vec2BertForCTC(config).eval()


def streamed(model, features: torch.Tensor, blocks: list[int]) -> torch.Tensor:
    """The outputs of `features` (1, T, 160) fed in blocks of the given sizes (cycled), then flushed."""
    stream = StreamingEncoder(model)
    outputs, start, index = [], 0, 0
    while start < features.shape[1]:
        size = blocks[index % len(blocks)]
        outputs.append(stream.feed(features[0, start : start + size]))
        start, index = start + size, index + 1
    outputs.append(stream.flush())
    return torch.cat(outputs)


# ------------------------------------------------------------------------------------------ the chunk mask
def test_chunk_mask_reads_own_chunk_and_left_chunks_only():
    allowed = Chunking(2, left=1).allowed(0, 6, 6)
    expected = torch.tensor([
        [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1],
    ], dtype=torch.bool)  # the module docstring's drawing
    assert torch.equal(allowed, expected)
    assert Chunking(2).allowed(4, 6, 6).all()  # no left bound: the last chunk reads everything


@pytest.mark.parametrize("adapter", [False, True])
@pytest.mark.parametrize("eager", [False, True])
def test_outputs_of_a_chunk_do_not_depend_on_later_audio(adapter, eager):
    model = chunked_ctc(4, left=1, adapter=adapter)
    if eager:
        model.set_attn_implementation("eager")  # the explicit softmax path
    features = torch.randn(1, 30, 160)
    later = features.clone()
    later[:, 12:] = torch.randn(1, 18, 160)  # frames of chunk 3 on change
    out, out_later = model(features).logits[0], model(later).logits[0]
    settled = 12 // (2 if adapter else 1)  # chunks 0-2, after the adapter's stride
    torch.testing.assert_close(out[:settled], out_later[:settled], rtol=0, atol=1e-6)
    assert not torch.allclose(out[settled:], out_later[settled:])


def test_left_chunk_bound_is_honoured_by_attention():
    """Each block reads `left` chunks back, so after two blocks a frame depends on two chunks to its left; the
    convolutions' reach is removed by a one-frame kernel, so the bound is exact."""
    model = chunked_ctc(4, left=1, conv_depthwise_kernel_size=1)  # 2 blocks
    features = torch.randn(1, 24, 160)
    earlier = features.clone()
    earlier[:, :4] = torch.randn(1, 4, 160)  # chunk 0 changes
    out, out_earlier = model(features).logits[0], model(earlier).logits[0]
    torch.testing.assert_close(out[12:], out_earlier[12:], rtol=0, atol=1e-6)  # chunks 3.. never read chunk 0
    assert not torch.allclose(out[8:12], out_earlier[8:12])  # chunk 2 reads it through chunk 1 of block 0


def test_a_padded_batch_gives_each_clip_its_own_outputs_when_chunked():
    model = chunked_ctc(4, left=2, adapter=True)
    long, short = torch.randn(1, 26, 160), torch.randn(1, 15, 160)
    batch = torch.zeros(2, 26, 160)
    batch[0], batch[1, :15] = long[0], short[0]
    mask = torch.zeros(2, 26, dtype=torch.long)
    mask[0], mask[1, :15] = 1, 1
    logits = model(batch, attention_mask=mask).logits
    torch.testing.assert_close(logits[0], model(long).logits[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1, :8], model(short).logits[0], rtol=0, atol=1e-5)


def test_full_context_config_writes_no_streaming_keys_and_chunked_one_round_trips(tmp_path):
    plain = Wav2Vec2BertConfig(**tiny_config_kwargs())
    assert not {"streaming_chunk_size", "streaming_left_chunks"} & plain.to_diff_dict().keys()
    chunked = Wav2Vec2BertConfig(**tiny_config_kwargs(streaming_chunk_size=8, streaming_left_chunks=2))
    chunked.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["streaming_chunk_size"], saved["streaming_left_chunks"]) == (8, 2)
    loaded = Wav2Vec2BertConfig.from_pretrained(tmp_path)
    assert (loaded.streaming_chunk_size, loaded.streaming_left_chunks) == (8, 2)
    transformers = pytest.importorskip("transformers")
    theirs = transformers.Wav2Vec2BertConfig.from_pretrained(tmp_path)  # extra keys kept as attributes there
    assert theirs.streaming_chunk_size == 8


def test_full_context_model_is_unchanged_by_the_chunking_code():
    """A config without chunks takes none of the chunked paths: outputs equal transformers' model's
    (tests/test_parity.py covers every head; this pins the CTC head with the adapter)."""
    transformers = pytest.importorskip("transformers")
    model = chunked_ctc(None, adapter=True)
    theirs = transformers.Wav2Vec2BertForCTC(transformers.Wav2Vec2BertConfig(**tiny_config_kwargs(add_adapter=True)))
    theirs.load_state_dict(model.state_dict())
    theirs.eval()
    features = torch.randn(1, 21, 160)
    torch.testing.assert_close(model(features).logits, theirs(features).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(streaming_chunk_size=5, add_adapter=True), "sizes that work: 2 (40 ms), 4 (80 ms)"),
    (dict(streaming_chunk_size=8, position_embeddings_type="rotary"), "needs position_embeddings_type"),
    (dict(streaming_left_chunks=2), "streaming_left_chunks needs streaming_chunk_size"),
    (dict(streaming_chunk_size=8, add_adapter=True, adapter_kernel_size=5), "reads past a chunk's end"),
    (dict(streaming_chunk_size=0), "streaming_chunk_size must be >= 1"),
])
def test_chunk_settings_a_model_cannot_use_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides)))


# ------------------------------------------------------------------------------------------- cached inference
@pytest.mark.parametrize(("chunk", "left", "adapter"), [
    (4, None, False), (4, 1, False), (6, 0, False), (8, 2, True), (2, 3, True), (4, None, True),
])
def test_streaming_equals_one_forward_with_the_chunk_mask(chunk, left, adapter):
    model = chunked_ctc(chunk, left, adapter)
    for frames, blocks in ((37, [1, 5, 3]), (40, [7]), (9, [2, 11])):
        features = torch.randn(1, frames, 160, generator=torch.Generator().manual_seed(frames))
        full = model(features).logits[0]
        torch.testing.assert_close(streamed(model, features, blocks), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("explicit", [False, True])
def test_streaming_equals_the_forward_when_attention_runs_in_row_blocks(monkeypatch, explicit):
    """Long clips run the bias path a few query rows at a time: each block gets its rows' chunk mask."""
    import w2vbert.model.attention as attention

    monkeypatch.setattr(attention, "ATTENTION_CHUNK_ROWS_CPU", 3)  # blocks that straddle chunk boundaries
    model = chunked_ctc(4, 1, adapter=True)
    if explicit:
        model.set_attn_implementation("eager")
    features = torch.randn(1, 29, 160)
    torch.testing.assert_close(streamed(model, features, [4]), model(features).logits[0], rtol=0, atol=1e-5)


def test_a_chunked_attention_is_refused_while_tracing_for_onnx_with_the_reason(monkeypatch):
    """The exported attention form takes no chunk mask: tracing a chunked model stops with the reason."""
    from w2vbert.model.attention import attend

    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    query = torch.randn(1, 2, 8, 4)
    with pytest.raises(RuntimeError, match="chunked .* cannot be exported to ONNX"):
        attend(query, query, query, scale=0.5, chunks=Chunking(4))


def test_streaming_the_bare_encoder_gives_its_hidden_states():
    torch.manual_seed(1)
    model = Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(
        add_adapter=True, streaming_chunk_size=4, streaming_left_chunks=1, add_inner_layer_norm=True,
        use_intermediate_ffn_before_adapter=True, add_encoder_layer_norm=True,
    ))).eval()
    features = torch.randn(1, 23, 160)
    torch.testing.assert_close(streamed(model, features, [3]), model(features).last_hidden_state[0], rtol=0, atol=1e-5)


def test_peek_shows_the_partial_chunk_without_changing_the_stream():
    model = chunked_ctc(8, 1)
    features = torch.randn(1, 20, 160)
    stream = StreamingEncoder(model)
    assert stream.feed(features[0, :11]).shape[0] == 8  # chunk 0 complete, 3 frames pending
    partial = stream.peek()
    assert partial.shape[0] == 3
    torch.testing.assert_close(stream.peek(), partial)  # peeking twice: the same
    rest = torch.cat([stream.feed(features[0, 11:]), stream.flush()])
    torch.testing.assert_close(rest, model(features).logits[0, 8:], rtol=0, atol=1e-5)


def test_a_full_context_model_is_refused_for_streaming_with_the_reason():
    with pytest.raises(ValueError, match="full context.*--streaming"):
        StreamingEncoder(chunked_ctc(None))


def test_streaming_cost_per_chunk_does_not_grow_with_the_stream():
    """The caches hold at most left x chunk frames, however long the stream."""
    model = chunked_ctc(4, left=2)
    stream = StreamingEncoder(model)
    for _ in range(30):
        stream.feed(torch.randn(4, 160))
    cache = stream.state.layers[0]
    assert cache.attention.key.shape[2] == 8
    assert cache.convolution.frames.shape[1] == model.config.conv_depthwise_kernel_size - 1


# ------------------------------------------------------------------------------------------ fixed statistics
def fixed_extractor(seed: int = 0):
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor

    generator = torch.Generator().manual_seed(seed)
    clips = [0.1 * torch.randn(n, generator=generator).numpy() for n in (8000, 12345)]
    return SeamlessM4TFeatureExtractor().with_fixed_statistics(clips)


def test_fixed_statistics_are_the_mean_and_deviation_of_the_training_frames():
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor

    clip = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(3)).numpy()
    fixed = SeamlessM4TFeatureExtractor().with_fixed_statistics([clip])
    # on the clip they were measured on, fixed statistics are its own: the per-clip features (to float32 rounding)
    ours = fixed(clip, return_tensors="pt", sampling_rate=16000)["input_features"]
    per_clip = SeamlessM4TFeatureExtractor()(clip, return_tensors="pt", sampling_rate=16000)["input_features"]
    torch.testing.assert_close(ours, per_clip, rtol=0, atol=1e-4)


def test_fixed_statistics_are_saved_and_loaded_with_the_extractor(tmp_path):
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor

    extractor = fixed_extractor()
    extractor.save_pretrained(tmp_path)
    loaded = SeamlessM4TFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.mel_mean == extractor.mel_mean and loaded.mel_std == extractor.mel_std
    plain = SeamlessM4TFeatureExtractor()
    assert "mel_mean" not in plain.to_dict()  # files of per-clip extractors stay as transformers writes them
    with pytest.raises(ValueError, match="need 80 values each"):
        SeamlessM4TFeatureExtractor(mel_mean=[0.0], mel_std=[1.0])


def test_feature_stream_gives_the_whole_clip_steps_block_by_block():
    extractor = fixed_extractor()
    clip = 0.1 * torch.randn(9000, generator=torch.Generator().manual_seed(5)).numpy()  # 55 frames: 27 steps
    whole = extractor(clip, return_tensors="pt", sampling_rate=16000)["input_features"][0, :27]
    stream = extractor.stream()
    blocks = [stream.feed(clip[start : start + 777]) for start in range(0, len(clip), 777)]
    steps = torch.cat([*blocks, stream.flush()])
    torch.testing.assert_close(steps, whole, rtol=0, atol=1e-5)


def test_per_clip_normalisation_is_refused_for_streaming_with_the_reason():
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor

    with pytest.raises(ValueError, match="per-clip normalisation needs the whole clip"):
        SeamlessM4TFeatureExtractor().stream()


# -------------------------------------------------------------------------------------------------- training
def write_clips(folder, count: int = 4) -> str:
    import wave

    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["audio\ttext"]
    for i in range(count):
        with wave.open(str(folder / f"{i}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(16000)
            f.writeframes((0.1 * rng.standard_normal(12000) * 32767).astype(np.int16).tobytes())
        rows.append(f"{i}.wav\tab ba")
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    return str(folder / "train.tsv")


def test_finetune_streaming_saves_a_chunked_model_with_fixed_statistics_that_streams(tmp_path):
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor
    from w2vbert.cli.parser import build_parser

    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(tmp_path / "base")
    manifest = write_clips(tmp_path)
    args = build_parser().parse_args([
        "finetune", "--model", str(tmp_path / "base"), "--train", manifest, "--output-dir", str(tmp_path / "run"),
        "--max-steps", "2", "--warmup-steps", "1", "--save-every", "2", "--max-batch-seconds", "2",
        "--streaming", "160", "--streaming-left-chunks", "2", "--dynamic-chunks", "80,160,320", "--no-progress",
    ])
    assert args.run(args) == 0
    saved = tmp_path / "run" / "last"
    model = Wav2Vec2BertForCTC.from_pretrained(saved).eval()
    assert (model.config.streaming_chunk_size, model.config.streaming_left_chunks) == (8, 2)
    extractor = SeamlessM4TFeatureExtractor.from_pretrained(saved)
    assert extractor.mel_mean is not None  # measured on the training clips
    features = extractor(torch.randn(8000).numpy() * 0.1, return_tensors="pt", sampling_rate=16000)
    torch.testing.assert_close(streamed(model, features["input_features"], [5]), model(**features).logits[0],
                               rtol=0, atol=1e-5)


def test_dynamic_chunk_sizes_are_drawn_per_step_and_refused_when_the_adapter_cannot_divide_them(tmp_path):
    from w2vbert.training.trainer import Trainer, TrainingConfig

    model = chunked_ctc(4, 1, adapter=True).train()
    trainer = Trainer(model, TrainingConfig(output_dir=str(tmp_path), chunk_sizes=(2, 4, 8)), [], lambda b: b)
    drawn = set()
    for step in range(12):
        trainer.state.step = step
        with trainer._drawn_chunks():
            drawn.add(model.wav2vec2_bert.chunks.size)
        assert model.wav2vec2_bert.chunks == Chunking(4, 1)  # the config's again after the forward
    assert drawn == {2, 4, 8}
    bad = Trainer(model, TrainingConfig(output_dir=str(tmp_path), chunk_sizes=(3,)), [], lambda b: b)
    with pytest.raises(ValueError, match=r"chunk sizes \[3\].*sizes that work: 2, 4"):
        bad._prepare_model()


# ------------------------------------------------------------------------------------ transcription, live and file
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def chunked_demo(tmp_path_factory):
    """The shipped demo model made chunked (640 ms, 4 left chunks) with fixed statistics of the test clips: what
    `finetune --streaming` starts from (its text is already close to the full-context model's)."""
    from w2vbert import load_audio
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor

    folder = tmp_path_factory.mktemp("chunked-demo")
    shutil.copytree(ROOT / "examples" / "demo-model", folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"streaming_chunk_size": 32, "streaming_left_chunks": 4}))
    clips = [load_audio(DATA / name) for name in ("quick.wav", "hello.wav", "numbers.wav")]
    SeamlessM4TFeatureExtractor.from_pretrained(folder).with_fixed_statistics(clips).save_pretrained(folder)
    return folder


def test_streaming_text_does_not_depend_on_how_the_audio_is_cut(chunked_demo):
    from w2vbert import load_audio, pipeline
    from w2vbert.inference.streaming import StreamingTranscription

    pipe = pipeline("automatic-speech-recognition", str(chunked_demo))
    audio = load_audio(DATA / "quick.wav")
    texts, finals = [], []
    for block in (160, 4000, 16000 * 60):
        stream = StreamingTranscription(pipe)
        settled = "".join(stream.feed(audio[i : i + block]).final for i in range(0, len(audio), block))
        texts.append(stream.finish())
        finals.append(settled)
    assert texts[0] == texts[1] == texts[2] and len(texts[0].split()) >= 3
    for settled in finals:
        assert (texts[0] + " ").startswith(settled) and settled  # settled words: the transcript's first words


def test_transcribe_streaming_prints_the_streamed_text_and_refuses_a_full_context_model(chunked_demo, capsys):
    from w2vbert import pipeline
    from w2vbert.cli.parser import main
    from w2vbert.inference.streaming import transcribe_streaming

    pipe = pipeline("automatic-speech-recognition", str(chunked_demo))
    expected = transcribe_streaming(pipe, str(DATA / "quick.wav"), block_s=0.02)
    assert main(["transcribe", str(DATA / "quick.wav"), "-m", str(chunked_demo), "--streaming", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert main(["transcribe", str(DATA / "quick.wav"), "-m", str(ROOT / "examples" / "demo-model"), "--streaming",
                 "--no-progress"]) == 2
    assert "full context" in capsys.readouterr().err


def test_the_live_websocket_streams_a_chunked_model_chunk_by_chunk_and_ends_with_the_files_text(chunked_demo):
    pytest.importorskip("uvicorn")
    pytest.importorskip("websockets.sync.client")
    from test_server import pcm16, recording_of, running, stream
    from w2vbert import pipeline
    from w2vbert.audio.decode import SAMPLING_RATE
    from w2vbert.inference.streaming import StreamingTranscription
    from w2vbert.serving.app import ServeSettings, create_app

    audio = recording_of(12.37)  # ends mid-chunk: the last words come with the end of the stream
    sent = np.frombuffer(pcm16(audio), "<i2").astype(np.float32) / 32768  # what PCM16 carries
    expected = StreamingTranscription(pipeline("automatic-speech-recognition", str(chunked_demo)))
    expected.feed(sent)
    expected_text = expected.finish()
    with running(create_app(ServeSettings(model=str(chunked_demo), max_wait_ms=5))) as url:
        messages = stream(url, audio, chunk_s=0.1)
    assert messages[-1]["type"] == "done" and messages[-1]["text"] == expected_text
    assert messages[-1]["duration"] == pytest.approx(len(audio) / SAMPLING_RATE, abs=0.01)
    finals = [m for m in messages if m["type"] == "final"]
    assert "".join(m["text"] for m in finals) == expected_text
    assert len(finals) >= 5  # words settle chunk by chunk, not at the end (12 s, about 25 words)
    committed = [m["committed"] for m in messages if m["type"] in ("partial", "final")]
    assert all(later.startswith(earlier) for earlier, later in zip(committed, committed[1:], strict=False))
    assert any(m["type"] == "partial" for m in messages)


def test_the_shipped_streaming_demo_model_is_chunked_and_streams_the_example_recordings():
    """examples/streaming-demo-model (scripts/train_streaming_demo.py): 640 ms chunks, fixed statistics; on the
    example recordings its streamed text is the full-context demo model's (both write "bird" for "birds")."""
    from w2vbert import Wav2Vec2BertConfig, pipeline
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor
    from w2vbert.inference.streaming import transcribe_streaming

    shipped = ROOT / "examples" / "streaming-demo-model"
    config = Wav2Vec2BertConfig.from_pretrained(shipped)
    assert (config.streaming_chunk_size, config.streaming_left_chunks) == (32, 4)
    assert SeamlessM4TFeatureExtractor.from_pretrained(shipped).mel_mean is not None
    streaming = pipeline("automatic-speech-recognition", str(shipped))
    full = pipeline("automatic-speech-recognition", str(ROOT / "examples" / "demo-model"))
    for clip in sorted((ROOT / "examples" / "audio").glob("*.wav")):
        assert transcribe_streaming(streaming, str(clip)) == full(str(clip))["text"]
