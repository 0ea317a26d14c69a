"""Voice activity detection (`vad=`, `--vad`): with the detector only the speech reaches the model (half of a
recording that is half pauses of silence and noise), nothing is written into the pauses, the word error on the
speech is kept, and times are in the recording's own time."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch

from w2vbert import VadOptions, load_audio, pipeline
from w2vbert.audio.windows import WindowPlan
from w2vbert.cli.parser import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo-model"

# The recording of benchmarks/vad.py (one builder for both): clips with pauses of silence and noise, 50% each.
_spec = importlib.util.spec_from_file_location("vad_benchmark", ROOT / "benchmarks" / "vad.py")
bench = sys.modules.setdefault("vad_benchmark", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def clips():
    return bench.example_clips()


@pytest.fixture(scope="module")
def mixed(clips):
    return bench.mixed_recording(clips, 30)  # 30 s of speech, 30 s of pauses


@pytest.fixture(scope="module")
def plain():
    return pipeline("automatic-speech-recognition", model=DEMO, batch_size=4)


@pytest.fixture(scope="module")
def with_vad():
    return pipeline("automatic-speech-recognition", model=DEMO, batch_size=4, vad=True)


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * 16000)) * 10 ** (dbfs / 20)).astype(np.float32)


def test_vad_and_the_noise_trained_model_write_no_word_into_pauses_and_vad_runs_half_the_audio(
        mixed, clips, plain, with_vad, monkeypatch):
    without = plain(mixed.audio, return_timestamps="word")
    # The demo model is trained with noise floors and dither (scripts/train_demo.py): it writes nothing into the
    # pauses either (the model before that wrote 17 words into the benchmark's 3 minutes).
    assert bench.inserted_words(without["chunks"], mixed.spans) == []
    steps = []  # 20 ms feature steps the model ran
    forward = with_vad.forward
    monkeypatch.setattr(with_vad, "forward", lambda f, m: steps.append(int(m.sum())) or forward(f, m))
    result = with_vad(mixed.audio, return_timestamps="word")
    assert bench.inserted_words(result["chunks"], mixed.spans) == []
    # Word error on the speech: no worse than the words written there without the detector, and near the model's
    # on the clips with nothing around them.
    inserted = bench.inserted_words(without["chunks"], mixed.spans)
    speech_words = " ".join(c["text"] for c in without["chunks"] if c not in inserted)
    alone = " ".join(plain(audio)["text"] for audio, _ in clips)
    clean = jiwer.wer(" ".join(text for _, text in clips), alone)
    wer = jiwer.wer(mixed.reference, result["text"])
    assert wer <= jiwer.wer(mixed.reference, speech_words) and wer <= clean + 0.05
    ran = sum(steps) * 320 / len(mixed.audio)
    assert 0.4 < ran < 0.6, f"the model ran {ran:.0%} of the audio"  # half is speech: the other half is skipped


def test_word_times_are_in_the_recordings_time_past_skipped_noise(clips, plain, with_vad):
    audio = clips[0][0]
    alone = plain(audio, return_timestamps="word")["chunks"]
    offset = 7.04  # a whole number of the demo model's 40 ms frames
    shifted = with_vad(np.concatenate([noise(offset, -50), audio, noise(3, -40)]), return_timestamps="word")
    assert [c["text"] for c in shifted["chunks"]] == [c["text"] for c in alone]
    for got, expected in zip(shifted["chunks"], alone, strict=True):
        np.testing.assert_allclose(got["timestamp"], np.add(expected["timestamp"], offset), atol=0.081)
    chars = with_vad(np.concatenate([noise(offset, -50), audio]), return_timestamps="char")["chunks"]
    assert chars[0]["timestamp"][0] >= offset


def test_long_speech_still_runs_as_windows_and_gives_the_text_of_one_window(clips, with_vad):
    speech = np.concatenate([clips[0][0], clips[1][0], clips[0][0]])  # 7.8 s of speech in one region
    audio = np.concatenate([noise(2, -50), speech, noise(2, -50)])
    assert with_vad(audio, chunk_length_s=3)["text"] == with_vad(audio)["text"]


def test_a_recording_without_speech_gives_empty_text_not_an_error(with_vad):
    for audio in (np.zeros(5 * 16000, np.float32), noise(5, -60), noise(0.01, -40)):
        assert with_vad(audio) == {"text": ""}
        assert with_vad(audio, return_timestamps="word") == {"text": "", "chunks": []}


def test_speech_windows_place_each_regions_windows_at_its_start_on_whole_frames(monkeypatch):
    from w2vbert.audio import vad

    monkeypatch.setattr(vad, "speech_regions", lambda audio, options: [(1000, 5000), (5100, 9000), (40000, 70000)])
    plan = WindowPlan.from_seconds(1.0, 0.2, 640)  # 1 s windows: the last region needs several
    out = list(vad.speech_windows([np.zeros(80000, np.float32)], plan, VadOptions()))
    # (640, 5120) and (5120, 9600): regions widened to whole frames meet, and become one
    assert [w.start for w in out[:1]] == [640] and out[0].samples == 9600 - 640
    assert [w.start for w in out[1:-1]] == [39680, 39680 + plan.step, 39680 + 2 * plan.step]
    assert all(w.first_frame == (w.start + w.drop_left * 640) // 640 for w in out)
    assert out[-1].start == 80000 and out[-1].samples == 0  # the end, which counts the skipped tail


def test_torch_threads_are_unchanged_by_importing_and_running_the_detector():
    code = ("import torch; torch.set_num_threads(2); import numpy as np; from w2vbert.audio import vad; "
            "vad.speech_regions(np.zeros(16000, np.float32), vad.VadOptions()); print(torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "2"  # silero_vad's import alone sets 1
    before = torch.get_num_threads()
    pipeline("automatic-speech-recognition", model=DEMO, vad=True)(noise(2, -50))
    assert torch.get_num_threads() == before


def test_transcribe_vad_on_the_command_line_writes_no_word_into_pauses(mixed, tmp_path, capsys):
    from test_pipelines import write_wav

    path = write_wav(tmp_path / "mixed.wav", mixed.audio)
    assert main(["transcribe", str(path), "-m", str(DEMO), "--vad", "--timestamps", "word", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["chunks"] and bench.inserted_words(result["chunks"], mixed.spans) == []


def test_a_corpus_run_with_vad_writes_the_pipelines_text_and_the_whole_duration(mixed, with_vad, tmp_path):
    import pandas as pd

    from test_pipelines import write_wav

    corpus = tmp_path / "in"
    corpus.mkdir()
    write_wav(corpus / "mixed.wav", mixed.audio)
    write_wav(corpus / "silent.wav", np.zeros(3 * 16000, np.float32))
    assert main(["transcribe", "--input-dir", str(corpus), "-m", str(DEMO), "-o", str(tmp_path / "out"), "--vad",
                 "--num-workers", "0", "--no-progress"]) == 0
    rows = pd.read_parquet(tmp_path / "out" / "data").set_index("id")
    assert rows.loc["mixed.wav", "text"] == with_vad(str(corpus / "mixed.wav"))["text"]
    assert rows.loc["silent.wav", "text"] == "" and rows["error"].isna().all()
    assert rows.loc["mixed.wav", "duration"] == pytest.approx(len(mixed.audio) / 16000, abs=1e-3)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["settings"]["vad"] == {
        "threshold": 0.5, "min_speech_ms": 250, "min_silence_ms": 1000, "speech_pad_ms": 100}


def test_the_server_with_vad_answers_the_pipelines_text_and_bills_the_whole_upload(mixed, with_vad):
    import httpx

    from test_server import running
    from w2vbert.audio.decode import wav_bytes
    from w2vbert.serving.app import ServeSettings, create_app

    with running(create_app(ServeSettings(model=str(DEMO), vad=VadOptions()))) as url:
        answer = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(mixed.audio))},
                            data={"response_format": "verbose_json"}, timeout=60).json()
        silent = httpx.post(url + "/v1/audio/transcriptions", timeout=60,
                            files={"file": ("b.wav", wav_bytes(np.zeros(16000, np.float32)))}).json()
    assert answer["text"] == with_vad(mixed.audio)["text"]
    assert answer["duration"] == pytest.approx(len(mixed.audio) / 16000, abs=1e-3)
    assert silent["text"] == ""


def test_bad_options_and_a_missing_extra_are_one_line_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"threshold is a probability in \(0, 1\), got 1.5"):
        VadOptions(threshold=1.5)
    with pytest.raises(ValueError, match="speech_pad_ms must be >= 0 ms, got -1"):
        VadOptions(speech_pad_ms=-1)
    with pytest.raises(TypeError, match="vad takes a w2vbert.VadOptions, True .* or None, got str"):
        pipeline("automatic-speech-recognition", model=DEMO, vad="yes")
    from w2vbert.audio import vad

    monkeypatch.setitem(sys.modules, "silero_vad", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'w2vbert\[vad\]'"):
        vad.silero()


def test_vad_leaves_a_recording_of_speech_only_as_it_was(clips, plain, with_vad):
    audio = load_audio(ROOT / "examples" / "audio" / "seven_birds.wav")
    assert with_vad(audio)["text"] == plain(audio)["text"]
