"""Corpus runs (`--manifest` / `--input-dir`): the shards hold what `pipeline(...)` gives per file, statistics what
a direct two-pass computation gives, and a killed, resumed, torchrun-shared or Ray run what one uninterrupted
process writes; bad inputs land in the failures table, bad runs are refused before any work."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load_file

from conftest import tiny_config_kwargs
from w2vbert import (
    SeamlessM4TFeatureExtractor,
    Wav2Vec2BertConfig,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertModel,
    Wav2Vec2BertProcessor,
    Wav2Vec2CTCTokenizer,
    build_vocab,
    pipeline,
)
from w2vbert.audio.decode import load_audio, wav_bytes
from w2vbert.cli.parser import main
from w2vbert.inference import corpus as bulk

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
LAYER = 1


def write_wav(path: Path, audio: np.ndarray) -> Path:
    path.write_bytes(wav_bytes(audio))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random models, one per corpus task, each a directory as `save_pretrained` writes it."""
    root = tmp_path_factory.mktemp("models")
    extractor = SeamlessM4TFeatureExtractor()
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs())).save_pretrained(root / "encoder")
    extractor.save_pretrained(root / "encoder")
    tokenizer = Wav2Vec2CTCTokenizer(vocab=build_vocab(["the quick brown fox"]), unk_token="[UNK]", pad_token="[PAD]")
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    Wav2Vec2BertForCTC(config).save_pretrained(root / "ctc")
    Wav2Vec2BertProcessor(extractor, tokenizer).save_pretrained(root / "ctc")
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(id2label={0: "en", 1: "de", 2: "mn"}, num_labels=None))
    Wav2Vec2BertForSequenceClassification(config).save_pretrained(root / "classifier")
    extractor.save_pretrained(root / "classifier")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Speech in folders and formats, one 8 s recording (several windows with --chunk-length 3), and a TSV
    manifest of it all with an id column."""
    root = tmp_path_factory.mktemp("corpus")
    for folder, name, source in [("a", "hello.wav", "hello.wav"), ("a", "quick.wav", "quick.wav"),
                                 ("b", "numbers.wav", "numbers.wav"), ("b", "quick.flac", "quick_44k.flac"),
                                 ("c", "quick.mp3", "quick_22k.mp3"), ("c", "short.wav", "short.wav")]:
        (root / folder).mkdir(exist_ok=True)
        shutil.copy(DATA / source, root / folder / name)
    joined = np.concatenate([load_audio(DATA / name) for name in ("numbers.wav", "quick.wav", "numbers.wav")])
    write_wav(root / "c" / "long.wav", joined)
    files = sorted(p.relative_to(root) for p in root.rglob("*.*"))
    (root / "corpus.tsv").write_text("id\taudio\n" + "".join(f"clip{n}\t{f}\n" for n, f in enumerate(files)))
    return root


def run_cli(*argv: str) -> int:
    # float32, the pipeline's default these runs are compared with (the command line's default is --dtype auto)
    dtype = () if "--dtype" in argv else ("--dtype", "float32")
    return main([*argv, *dtype, "--no-progress"])


def read_run(out: Path) -> dict:
    """Everything a corpus run wrote, as plain values: rows by id, frames by id, statistics, manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pd.read_parquet(out / "data").set_index("id").sort_index()
    frames = {}
    for shard in manifest["shards"]:
        if "frames_file" in shard:
            frames |= load_file(out / shard["frames_file"])
    stats = load_file(out / "stats.safetensors") if (out / "stats.safetensors").exists() else None
    return {"manifest": manifest, "rows": rows, "frames": frames, "stats": stats,
            "failures": pd.read_parquet(out / "failures.parquet")}


def assert_same_run(got: dict, expected: dict, atol: float = 0.0) -> None:
    assert got["manifest"]["shards"] == expected["manifest"]["shards"]
    assert got["manifest"]["settings"] == expected["manifest"]["settings"]
    pd.testing.assert_frame_equal(got["rows"].drop(columns="embedding", errors="ignore"),
                                  expected["rows"].drop(columns="embedding", errors="ignore"))
    if "embedding" in expected["rows"]:
        np.testing.assert_allclose(np.stack(got["rows"].embedding), np.stack(expected["rows"].embedding), atol=atol)
    assert got["frames"].keys() == expected["frames"].keys()
    for key, value in expected["frames"].items():
        np.testing.assert_allclose(got["frames"][key], value, atol=atol, rtol=0)
    if expected["stats"] is not None:
        for key, value in expected["stats"].items():
            np.testing.assert_allclose(got["stats"][key], value, atol=atol, rtol=0)


# ----------------------------------------------------------------------------------- what the shards hold
def test_embeddings_pooled_and_per_frame_equal_the_pipeline_per_file_and_stats_a_two_pass_computation(
        models, corpus, tmp_path):
    common = ["embed", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"), "--layer",
              str(LAYER), "--shard-size", "3", "--num-workers", "2"]
    assert run_cli(*common, "-o", str(tmp_path / "mean")) == 0
    assert run_cli(*common, "--pool", "none", "--stats", "-o", str(tmp_path / "frames")) == 0
    pooled, framed = read_run(tmp_path / "mean"), read_run(tmp_path / "frames")

    listed = pd.read_csv(corpus / "corpus.tsv", sep="\t").set_index("id")
    assert list(pooled["rows"].index) == sorted(listed.index) and pooled["rows"].error.isna().all()
    mean_pipe = pipeline("feature-extraction", models / "encoder", layer=LAYER, pool="mean")
    frame_pipe = pipeline("feature-extraction", models / "encoder", layer=LAYER, pool="none")
    every_frame = []
    for identifier, audio in listed.audio.items():
        path = str(corpus / audio)
        assert pooled["rows"].loc[identifier, "audio"] == path
        np.testing.assert_allclose(pooled["rows"].loc[identifier, "embedding"], mean_pipe(path), atol=1e-5, rtol=0)
        frames = frame_pipe(path)
        np.testing.assert_allclose(framed["frames"][identifier], frames, atol=1e-5, rtol=0)
        assert framed["rows"].loc[identifier, "frames"] == len(frames)
        every_frame.append(frames.astype(np.float64))
    every_frame = np.concatenate(every_frame)
    stats = framed["stats"]
    assert int(stats["count"][0]) == len(every_frame)
    np.testing.assert_allclose(stats["mean"], every_frame.mean(0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(stats["std"], every_frame.std(0, ddof=1), atol=1e-5, rtol=0)

    # The layout is readable without w2vbert: a fixed-size list column, and a manifest naming each shard.
    column = pq.read_schema(next((tmp_path / "mean" / "data").iterdir())).field("embedding").type
    assert pa.types.is_fixed_size_list(column) and column.list_size == 32 and column.value_type == pa.float32()
    manifest = framed["manifest"]
    assert [s["rows"] for s in manifest["shards"]] == [3, 3, 1]
    assert manifest["settings"]["layer"] == LAYER and manifest["settings"]["pool"] is None
    assert manifest["inputs"] == 7 and manifest["failed"] == 0 and manifest["statistics"] == "stats.safetensors"
    assert 0.0055 < manifest["hours"] < 0.0065  # 21.5 s of audio


def test_transcripts_with_word_times_and_labels_equal_the_pipeline_per_file_through_long_audio_windows(
        models, corpus, tmp_path):
    windows = ["--chunk-length", "3", "--stride-length", "0.5"]
    assert run_cli("transcribe", "--input-dir", str(corpus), "-m", str(models / "ctc"), "-o", str(tmp_path / "asr"),
                   "--timestamps", "word", *windows) == 0
    assert run_cli("classify", "--input-dir", str(corpus), "-m", str(models / "classifier"),
                   "-o", str(tmp_path / "labels"), "--top-k", "2") == 0
    asr = pd.read_parquet(tmp_path / "asr" / "data").set_index("id")
    labels = pd.read_parquet(tmp_path / "labels" / "data").set_index("id")
    recognizer = pipeline("automatic-speech-recognition", models / "ctc", chunk_length_s=3, stride_length_s=0.5)
    classifier = pipeline("audio-classification", models / "classifier")
    assert list(asr.index) == sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*.*") if p.suffix != ".tsv")
    for identifier in asr.index:
        expected = recognizer(str(corpus / identifier), return_timestamps="word")
        assert asr.loc[identifier, "text"] == expected["text"]
        assert [(c["text"], c["start"], c["end"]) for c in asr.loc[identifier, "chunks"]] == [
            (c["text"], *c["timestamp"]) for c in expected["chunks"]]
        top = classifier(str(corpus / identifier), top_k=2)
        assert list(labels.loc[identifier, "labels"]) == [t["label"] for t in top]
        assert labels.loc[identifier, "label"] == top[0]["label"]
        np.testing.assert_allclose(labels.loc[identifier, "scores"], [t["score"] for t in top], atol=1e-6)
    assert len(load_audio(corpus / "c" / "long.wav")) > 2 * 3 * 16000  # the long file did go through windows


@given(st.lists(st.integers(1, 9), min_size=1, max_size=8), st.floats(-1e3, 1e3), st.floats(1e-3, 1e2))
def test_statistics_merged_over_any_batches_equal_one_pass_over_all_frames(sizes, offset, scale):
    generator = np.random.default_rng(len(sizes))
    frames = [offset + scale * generator.standard_normal((n, 3)).astype(np.float32) for n in sizes]
    merged, parts = bulk.FrameStats(), bulk.FrameStats()
    for piece in frames:
        merged.add(piece)
    for half in (frames[: len(frames) // 2], frames[len(frames) // 2:]):  # two ranks' partial sums, merged
        part = bulk.FrameStats()
        for piece in half:
            part.add(piece)
        parts.merge(part.count, *(part.arrays()[k] for k in ("mean", "m2"))) if part.count else None
    everything = np.concatenate(frames).astype(np.float64)
    for stats in (merged, parts):
        assert stats.count == len(everything)
        np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-9, atol=1e-9 * abs(offset))
        np.testing.assert_allclose(stats.m2, ((everything - everything.mean(0)) ** 2).sum(0), rtol=1e-7)


# ------------------------------------------------------------------------------------ resumed and shared
def test_a_run_interrupted_mid_way_and_started_again_ends_with_the_files_of_an_uninterrupted_run(
        models, corpus, tmp_path, monkeypatch):
    argv = ["embed", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"), "--pool", "none",
            "--stats", "--shard-size", "2", "--num-workers", "0", "--layer", str(LAYER)]
    assert run_cli(*argv, "-o", str(tmp_path / "whole")) == 0

    written = bulk._write_shard

    def write_then_stop(output_dir, k, *rest):
        if k == 2:  # shards 0 and 1 are in place, 2 was being written when the process stopped
            (output_dir / "data" / ".shard-00002.parquet.x1y2.tmp").write_bytes(b"half a file")
            raise KeyboardInterrupt
        written(output_dir, k, *rest)

    monkeypatch.setattr(bulk, "_write_shard", write_then_stop)
    assert run_cli(*argv, "-o", str(tmp_path / "resumed")) == 130  # as after Ctrl-C
    names = {p.name for p in (tmp_path / "resumed" / "data").iterdir()}
    assert {"shard-00000.parquet", "shard-00001.parquet", ".shard-00002.parquet.x1y2.tmp"} <= names
    assert "shard-00002.parquet" not in names  # (shard 3 may have been written after it: it then counts as done)
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    monkeypatch.setattr(bulk, "_write_shard", written)
    resumed = []
    monkeypatch.setattr(bulk, "_row", lambda pipe, settings, entry, recording, row=bulk._row: (
        resumed.append(entry.id), row(pipe, settings, entry, recording))[1])
    assert run_cli(*argv, "-o", str(tmp_path / "resumed")) == 0
    assert sorted(resumed) == ["clip4", "clip5"] + ([] if "shard-00003.parquet" in names else ["clip6"])
    assert not list((tmp_path / "resumed").rglob("*.tmp"))  # the stopped writer's leftover is cleared
    assert_same_run(read_run(tmp_path / "resumed"), read_run(tmp_path / "whole"))


def test_a_killed_process_restarted_with_the_same_command_ends_with_the_files_of_an_uninterrupted_run(
        models, corpus, tmp_path):
    listed = (corpus / "corpus.tsv").read_text().splitlines()[1:]
    manifest = tmp_path / "forty.tsv"  # 40 shards of one input: the kill lands mid-run
    manifest.write_text("id\taudio\n" + "".join(f"{n}\t{corpus / listed[n % 7].split()[1]}\n" for n in range(40)))
    argv = [sys.executable, "-m", "w2vbert", "embed", "--manifest", str(manifest), "-m",
            str(models / "encoder"), "--pool", "none", "--stats", "--shard-size", "1", "--num-workers", "1",
            "--layer", str(LAYER), "--no-progress"]
    subprocess.run([*argv, "-o", str(tmp_path / "whole")], check=True, capture_output=True)
    killed = subprocess.Popen([*argv, "-o", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    first = tmp_path / "killed" / "data" / "shard-00000.parquet"
    deadline = time.time() + 120
    while not first.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(killed.pid, signal.SIGKILL)  # the process and its DataLoader worker, with no chance to clean up
    killed.wait()
    done = subprocess.run([*argv, "-o", str(tmp_path / "killed")], check=True, capture_output=True, text=True)
    before = int(re.search(r"\((\d+) done before\)", done.stdout).group(1))
    assert 1 <= before < 40, done.stdout
    assert_same_run(read_run(tmp_path / "killed"), read_run(tmp_path / "whole"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv: str) -> subprocess.CompletedProcess:
    """`w2vbert ARGV` in 2 processes, as `torchrun --nproc_per_node 2` starts them on this machine."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "w2vbert", *argv],
                          capture_output=True, text=True, timeout=300)


def test_torchrun_with_two_processes_writes_what_one_process_writes(models, corpus, tmp_path):
    argv = ["embed", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"), "--pool", "none",
            "--stats", "--shard-size", "2", "--num-workers", "0", "--layer", str(LAYER), "--no-progress"]
    subprocess.run([sys.executable, "-m", "w2vbert", *argv, "-o", str(tmp_path / "one")], check=True,
                   capture_output=True)
    done = torchrun(*argv, "-o", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("7 inputs") == 1  # one summary, from rank 0
    assert_same_run(read_run(tmp_path / "two"), read_run(tmp_path / "one"), atol=1e-6)


def test_the_ray_example_on_a_local_ray_instance_gives_the_embeddings_of_a_one_process_run(models, corpus, tmp_path):
    pytest.importorskip("ray")
    assert run_cli("embed", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"),
                   "--layer", str(LAYER), "-o", str(tmp_path / "bulk")) == 0
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "ray_embed.py"), "--manifest",
                           str(corpus / "corpus.tsv"), "--model", str(models / "encoder"), "--layer", str(LAYER),
                           "--output", str(tmp_path / "ray"), "--actors", "1", "--batch-size", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = read_run(tmp_path / "bulk")["rows"]
    theirs = pd.read_parquet(tmp_path / "ray").set_index("id").sort_index()
    assert list(theirs.index) == list(ours.index) and theirs.error.isna().all()
    np.testing.assert_allclose(np.stack(theirs.embedding), np.stack(ours.embedding), atol=1e-5, rtol=0)


def test_the_ray_predictor_maps_paths_and_arrays_and_one_bad_row_costs_no_other(models):
    from w2vbert.inference.ray_data import W2vBertPredictor

    predictor = W2vBertPredictor(str(models / "ctc"), "automatic-speech-recognition")
    paths = np.array([str(DATA / "quick.wav"), str(DATA / "missing.wav"), str(DATA / "hello.wav")], dtype=object)
    out = predictor({"audio": paths, "id": np.array(["q", "m", "h"], dtype=object)})
    expected = pipeline("automatic-speech-recognition", models / "ctc")
    assert list(out["id"]) == ["q", "m", "h"]
    assert out["error"][0] is None and out["error"][2] is None and "missing.wav" in out["error"][1]
    assert out["text"][0] == expected(str(DATA / "quick.wav"))["text"] and out["text"][1] is None
    audio = load_audio(DATA / "hello.wav")
    arrays = predictor({"array": np.array([audio, audio[:100]], dtype=object), "sampling_rate": np.array([16000] * 2)})
    assert arrays["text"][0] == expected(str(DATA / "hello.wav"))["text"]
    assert arrays["text"][1] is None and "too short" in arrays["error"][1]
    with pytest.raises(ValueError, match="needs an 'audio' column .* or an 'array' column, got \\['path'\\]"):
        predictor({"path": paths})
    # Frames of inputs of one length stay one array per row (np.array would stack them into one 3-D array of
    # Python floats), a batch of one row too, and a failed row is None.
    frames = W2vBertPredictor(str(models / "encoder"), "feature-extraction", pool=None)
    same = frames({"array": np.array([audio, audio, audio[:100]], dtype=object)})
    expected_frames = pipeline("feature-extraction", models / "encoder")(audio)
    assert same["embedding"].shape == (3,) and same["embedding"][2] is None
    for row in same["embedding"][:2]:
        np.testing.assert_allclose(row, expected_frames, atol=1e-5)
    assert frames({"audio": paths[:1]})["embedding"].shape == (1,)


# ------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_listed_in_the_failures_table_the_others_are_written_and_the_exit_code_says_so(
        models, corpus, tmp_path, capsys):
    (tmp_path / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "blip.wav", np.zeros(320))  # 20 ms: no 20 ms feature step survives the stride
    shutil.copy(DATA / "not_audio.txt", tmp_path / "text.wav")
    shutil.copy(DATA / "hello.wav", tmp_path / "hello.wav")
    rows = ["hello.wav", "missing.wav", "empty.wav", "blip.wav", "text.wav"]
    (tmp_path / "corpus.csv").write_text("audio\n" + "\n".join(rows) + "\n")
    assert run_cli("transcribe", "--manifest", str(tmp_path / "corpus.csv"), "-m", str(models / "ctc"),
                   "-o", str(tmp_path / "out")) == 1
    assert "5 inputs (0.00 h of audio), 4 failed" in capsys.readouterr().out
    failures = pd.read_parquet(tmp_path / "out" / "failures.parquet").set_index("id")
    assert list(failures.index) == rows[1:]
    reasons = failures.error.to_dict()
    assert "no such file" in reasons["missing.wav"] and "too short" in reasons["blip.wav"]
    assert "empty" in reasons["empty.wav"] and "text.wav" in reasons["text.wav"]
    written = pd.read_parquet(tmp_path / "out" / "data").set_index("id")
    assert written.loc["hello.wav", "text"] == pipeline("automatic-speech-recognition", models / "ctc")(
        str(DATA / "hello.wav"))["text"] and written.loc["missing.wav", "error"] == reasons["missing.wav"]


@pytest.mark.parametrize("manifest, message", [
    ("id\taudio\nx\ta/hello.wav\nx\ta/quick.wav\n", "ids must be unique in a run, and 1 repeat: 'x' (.*:2 and .*:3)"),
    ('{"audio": "a/hello.wav"}\n{"audio": \n', "corpus.jsonl:2: not a JSON object"),
    ("path\tid\na/hello.wav\tx\n", "corpus.tsv: .*audio"),
    ("audio\tduration\na/hello.wav\tlong\n", "corpus.tsv:2: 'duration' must be a number of seconds, got 'long'"),
])
def test_a_malformed_manifest_is_refused_naming_the_line_before_any_work(models, corpus, tmp_path, capsys, manifest,
                                                                        message):
    name = "corpus.jsonl" if manifest.startswith("{") else "corpus.tsv"
    (corpus / "bad").mkdir(exist_ok=True)
    (corpus / "bad" / name).write_text(manifest.replace("a/", "../a/"))
    assert run_cli("embed", "--manifest", str(corpus / "bad" / name), "-m", str(models / "encoder"),
                   "-o", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "out").exists()


def test_another_runs_directory_is_refused_unless_overwrite_which_starts_fresh(models, corpus, tmp_path, capsys):
    argv = ["embed", "--input-dir", str(corpus / "a"), "-m", str(models / "encoder"), "-o", str(tmp_path / "out")]
    assert run_cli(*argv, "--layer", "1") == 0
    assert run_cli(*argv, "--layer", "1") == 0  # the same run again: every shard is done
    assert "1 shards (1 done before)" in capsys.readouterr().out
    assert run_cli(*argv, "--layer", "2") == 1
    err = capsys.readouterr().err
    assert "holds the outputs of another run (layer differ): pass --overwrite" in err
    assert run_cli(*argv, "--layer", "2", "--overwrite") == 0
    assert read_run(tmp_path / "out")["manifest"]["settings"]["layer"] == 2
    assert "1 shards (0 done before)" in capsys.readouterr().out
    # The same number of inputs and the same first one, but another file after it: another run too.
    manifest = (corpus / "corpus.tsv").read_text().splitlines()
    (tmp_path / "one.tsv").write_text("\n".join(manifest[:3]) + "\n")
    (tmp_path / "two.tsv").write_text("\n".join(manifest[:2] + [manifest[3]]) + "\n")
    for name in ("one.tsv", "two.tsv"):
        (tmp_path / name).write_text((tmp_path / name).read_text().replace("\ta/", f"\t{corpus}/a/")
                                     .replace("\tb/", f"\t{corpus}/b/").replace("\tc/", f"\t{corpus}/c/"))
    listed = ["embed", "-m", str(models / "encoder"), "-o", str(tmp_path / "listed")]
    assert run_cli(*listed, "--manifest", str(tmp_path / "one.tsv")) == 0
    assert run_cli(*listed, "--manifest", str(tmp_path / "two.tsv")) == 1
    assert "(inputs_sha256 differ)" in capsys.readouterr().err


def test_a_run_resumed_after_the_weights_changed_in_place_is_refused_naming_the_file(
        models, corpus, tmp_path, capsys, caplog):
    model, out = tmp_path / "model", tmp_path / "out"
    shutil.copytree(models / "encoder", model)
    argv = ["embed", "--input-dir", str(corpus / "a"), "-m", str(model), "--shard-size", "1", "--num-workers", "0",
            "-o", str(out)]
    assert run_cli(*argv) == 0
    (out / "data" / "shard-00001.parquet").unlink()  # as if stopped before its last shard
    os.utime(model / "model.safetensors")  # touched, or copied: the same weights, resumed
    assert run_cli(*argv) == 0 and "2 shards (1 done before)" in capsys.readouterr().out

    (out / "data" / "shard-00001.parquet").unlink()
    header = (model / "model.safetensors").read_bytes()[:2048]
    torch.manual_seed(1)  # trained further and saved in place: other values under the very same header
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs())).save_pretrained(model)
    assert (model / "model.safetensors").read_bytes()[:2048] == header
    assert run_cli(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"w2vbert: error: {out} holds outputs of other weights: model.safetensors of {model} changed since "
                   "its shards were written: pass --overwrite to start again with these weights, or choose another "
                   "--output-dir"]
    assert not (out / "data" / "shard-00001.parquet").exists()

    # A run.json from before the fingerprint: resumed with a warning, and checked from then on.
    record = json.loads((out / "run.json").read_text())
    del record["weights"]
    (out / "run.json").write_text(json.dumps(record))
    with caplog.at_level("WARNING", logger="w2vbert"):
        assert run_cli(*argv) == 0
    assert f"{out / 'run.json'} records no fingerprint of the weights" in caplog.text
    assert json.loads((out / "run.json").read_text())["weights"].keys() == {"model.safetensors"}


def test_every_file_of_a_run_and_of_save_pretrained_gets_the_umasks_mode(corpus, tmp_path, umask):
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs())).save_pretrained(tmp_path / "model")
    SeamlessM4TFeatureExtractor().save_pretrained(tmp_path / "model")
    assert run_cli("embed", "--input-dir", str(corpus / "a"), "-m", str(tmp_path / "model"), "--stats",
                   "--num-workers", "0", "-o", str(tmp_path / "out")) == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"run.json", "shard-00000.parquet", "stats.safetensors", "manifest.json", "model.safetensors"} <= {
        p.name for p in files}
    assert {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.relative_to(tmp_path).as_posix(): oct(0o666 & ~umask) for p in files}


def test_usage_mistakes_of_a_corpus_run_exit_2(models, corpus, tmp_path, capsys):
    assert run_cli("transcribe", "--input-dir", str(corpus), "-m", str(models / "ctc")) == 2
    assert "a corpus run (--manifest / --input-dir) writes shards: pass --output-dir" in capsys.readouterr().err
    assert run_cli("embed", str(DATA / "hello.wav"), "--stats", "-m", str(models / "encoder"),
                   "-o", str(tmp_path)) == 2
    assert "--stats goes with a corpus run" in capsys.readouterr().err
    assert run_cli("transcribe", "-m", str(models / "ctc")) == 2
    assert "name audio files, or a --manifest or --input-dir" in capsys.readouterr().err


@pytest.fixture
def small_disk(tmp_path):
    """A 32 KiB file system (tmpfs), where a shard of frames cannot fit; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_a_clear_error_and_no_half_written_shard_counts_as_done(models, corpus, small_disk, capsys):
    out = small_disk / "out"
    argv = ["embed", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"), "--pool", "none",
            "--shard-size", "4", "-o", str(out)]
    assert run_cli(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"w2vbert: error: cannot write {out}/frames/shard-00000.safetensors: the disk is full (No space "
                   "left on device): shard shard-00000 is not counted as done; rerun the same command to redo it"]
    assert not list((out / "data").glob("*.parquet")) and not (out / "manifest.json").exists()
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != "run.json"]  # no temporary left behind


@pytest.mark.parametrize("full_at", ["run.json", "shard-00000.parquet"])
def test_a_disk_full_from_the_start_names_the_file_says_so_and_counts_nothing_half_written(
        models, corpus, tmp_path, monkeypatch, capsys, full_at):
    out = tmp_path / "out"
    write_text, write_table = Path.write_text, pq.write_table

    def half_then_full(path, *rest, write):
        write(path, *rest)
        if Path(path).name.startswith(f".{full_at}."):  # its temporary: half written when the disk filled up
            Path(path).write_bytes(Path(path).read_bytes()[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a write says: no file named

    monkeypatch.setattr(Path, "write_text", lambda path, *rest, **options: half_then_full(
        path, *rest, write=lambda *a: write_text(*a, **options)))
    monkeypatch.setattr(pq, "write_table", lambda table, path, **options: half_then_full(
        path, write=lambda p: write_table(table, p, **options)))
    argv = ["embed", "--input-dir", str(corpus / "a"), "-m", str(models / "encoder"), "--num-workers", "0",
            "-o", str(out)]
    assert run_cli(*argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    folder = "" if full_at == "run.json" else "data/"
    assert len(err) == 1 and err[0].startswith(
        f"w2vbert: error: cannot write {out}/{folder}{full_at}: the disk is full (No space left on device)"), err
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.parquet")) and not (out / "manifest.json").exists()
    monkeypatch.undo()
    assert run_cli(*argv) == 0 and "1 shards (0 done before)" in capsys.readouterr().out
