"""Speech units (`w2vbert.units`, `w2vbert units fit / extract`, `pipeline("speech-units")`): k-means reaches
scikit-learn's inertia, the sample of frames does not depend on how the corpus was shared out, extraction gives the
nearest centroid of each frame `embed` gives, a resumed or torchrun-shared extraction writes what one process
writes, codebooks from elsewhere load (never a pickle), and bad inputs are refused in one line naming the numbers.

The corpus and the tiny random encoder are test_bulk.py's fixtures."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

import test_bulk
from test_bulk import run_cli, torchrun, write_wav
from w2vbert import pipeline
from w2vbert.inference import corpus as bulk
from w2vbert.units import kmeans as kmeans_module
from w2vbert.units.codebook import Codebook, load_codebook, run_lengths
from w2vbert.units.kmeans import KMeansOptions, assign, kmeans
from w2vbert.units.quality import bits_per_second, unit_quality
from w2vbert.units.sampling import SampleCut, frame_keys, sampled_frames, smallest_keys

LAYER = 1
K = 8
models, corpus = test_bulk.models, test_bulk.corpus  # the fixtures: a tiny random encoder, a corpus of formats


def mixture(seed: int, points: int = 1500, dim: int = 12, clusters: int = 12) -> np.ndarray:
    """Overlapping Gaussian clusters: k-means has local minima, as on real frames."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 2
    return (centres[rng.integers(clusters, size=points)] + rng.normal(size=(points, dim))).astype(np.float32)


# ------------------------------------------------------------------------------------------------- k-means
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_reaches_scikit_learns_inertia_within_one_percent(seed):
    x = mixture(seed)
    reference = KMeans(12, init="k-means++", n_init=4, random_state=seed, algorithm="lloyd").fit(x).inertia_
    ours = kmeans(torch.from_numpy(x), KMeansOptions(k=12, n_init=4, seed=seed))
    assert ours.inertia <= 1.01 * reference
    assert len(ours.inertias) == 4 and ours.inertia == min(ours.inertias)
    # the reported inertia is that of the centroids returned
    assert ours.inertia == pytest.approx(float(assign(torch.from_numpy(x), ours.centroids)[1].double().sum()))


def test_mini_batch_kmeans_reaches_scikit_learns_mini_batch_inertia_on_average_over_seeds():
    ratios = []
    for seed in range(6):  # one fit per seed: each lands in a local minimum, either side of scikit-learn's
        x = mixture(seed)
        fitted = MiniBatchKMeans(12, n_init=4, random_state=seed, batch_size=256, reassignment_ratio=0.0).fit(x)
        theirs = float(((x - fitted.cluster_centers_[fitted.predict(x)]) ** 2).sum())  # over every point, as ours
        ours = kmeans(torch.from_numpy(x), KMeansOptions(k=12, n_init=4, seed=seed, algorithm="minibatch",
                                                         batch_size=256))
        assert ours.inertia == pytest.approx(float(assign(torch.from_numpy(x), ours.centroids)[1].double().sum()))
        ratios.append(ours.inertia / theirs)
    assert np.mean(ratios) <= 1.03, ratios


def test_distances_in_small_blocks_give_the_labels_of_one_full_matrix(monkeypatch):
    x, centroids = torch.from_numpy(mixture(3)), torch.from_numpy(mixture(4, points=10))
    full = torch.cdist(x.double(), centroids.double()).pow(2)
    monkeypatch.setattr(kmeans_module, "BLOCK_ELEMENTS", 7 * len(centroids))  # blocks of 7 rows
    labels, distances = assign(x, centroids)
    assert torch.equal(labels, full.argmin(1))
    torch.testing.assert_close(distances.double(), full.min(1).values, rtol=1e-4, atol=1e-3)


def test_kmeans_refuses_fewer_frames_or_distinct_values_than_k():
    with pytest.raises(ValueError, match=r"k = 20 needs at least 20 frames, got 10"):
        kmeans(torch.zeros(10, 3), KMeansOptions(k=20))
    repeated = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).repeat(50, 1)
    with pytest.raises(ValueError, match=r"100 frames hold only 2 distinct values, fewer than k = 3"):
        kmeans(repeated, KMeansOptions(k=3))


# ------------------------------------------------------------------------------------------------ sampling
def test_the_sample_is_the_same_however_the_files_are_split_and_cut_to_size_by_the_smallest_keys():
    files = {f"speaker{n}/clip{n}.wav": 50 + 37 * n for n in range(9)}
    keys = {name: frame_keys(name, frames, seed=5) for name, frames in files.items()}
    assert all(np.array_equal(keys[name], frame_keys(name, files[name], seed=5)) for name in files)
    assert not np.array_equal(keys["speaker0/clip0.wav"], frame_keys("speaker0/clip0.wav", 50, seed=6))
    everything = np.concatenate(list(keys.values()))
    assert 0 <= everything.min() and everything.max() < 1 and abs(everything.mean() - 0.5) < 0.03
    chosen = everything[smallest_keys(everything, 300)]
    assert len(chosen) == 300 and chosen.max() <= np.sort(everything)[299]
    # gathered in two halves, each cut first: the same frames
    halves = [np.concatenate([keys[n] for n in list(files)[:4]]), np.concatenate([keys[n] for n in list(files)[4:]])]
    parts = np.concatenate([h[smallest_keys(h, 300)] for h in halves])
    np.testing.assert_array_equal(np.sort(parts[smallest_keys(parts, 300)]), np.sort(chosen))
    kept = sampled_frames("speaker1/clip1.wav", 87, seed=5, fraction=0.25)
    np.testing.assert_array_equal(kept, np.flatnonzero(keys["speaker1/clip1.wav"] < 0.25))


def test_the_sample_cut_keeps_the_frames_of_smallest_keys_in_input_order_in_whatever_order_inputs_arrive():
    rng = np.random.default_rng(0)
    inputs = [(frame_keys(f"clip{n}", 40 + n, seed=1), rng.normal(size=(40 + n, 3)).astype(np.float32))
              for n in range(12)]
    every_key, every_frame = np.concatenate([k for k, _ in inputs]), np.concatenate([f for _, f in inputs])
    expected = every_frame[np.sort(np.argsort(every_key)[:100])]
    for arrival in (range(12), rng.permutation(12)):  # in input order, and as Ray's batches may come
        cut = SampleCut(100)  # 100 of 606 frames: cut several times on the way
        for n in arrival:
            keys, frames = inputs[n]
            cut.add(keys, (n << 32) + np.arange(len(keys)), frames)
        np.testing.assert_array_equal(cut.frames(), expected)


# ------------------------------------------------------------------------------------------------ codebooks
def test_a_saved_codebook_and_a_npy_of_centroids_load_and_a_pickle_is_refused_with_the_conversion(tmp_path):
    rng = np.random.default_rng(0)
    centroids, mean, std = (torch.from_numpy(rng.normal(size=s).astype(np.float32)) for s in [(5, 4), (4,), (4,)])
    Codebook(centroids, mean, std.abs(), {"layer": 3, "model": "m"}).save(tmp_path / "book")
    loaded = load_codebook(tmp_path / "book")
    assert torch.equal(loaded.centroids, centroids) and torch.equal(loaded.mean, mean) and loaded.layer == 3
    assert json.loads((tmp_path / "book" / "codebook.json").read_text())["k"] == 5
    np.save(tmp_path / "km.npy", centroids.numpy().astype(np.float64))  # SeamlessM4T ships (k, dim) arrays
    from_npy = load_codebook(tmp_path / "km.npy")
    assert torch.equal(from_npy.centroids, centroids) and from_npy.mean is None and from_npy.layer is None

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    (tmp_path / "km.pkl").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match=r"km.pkl: a pickled k-means model is not loaded .*joblib.load\("):
        load_codebook(tmp_path / "km.pkl")
    np.save(tmp_path / "objects.npy", np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="what needs unpickling"):
        load_codebook(tmp_path / "objects.npy")


def test_units_of_frames_are_the_nearest_normalised_centroid_and_runs_merge_with_their_lengths():
    rng = np.random.default_rng(1)
    frames, centroids = rng.normal(size=(40, 6)) * 3 + 1, rng.normal(size=(7, 6))
    mean, std = frames.mean(0), frames.std(0)
    book = Codebook(*(torch.from_numpy(a.astype(np.float32)) for a in (centroids, mean, std)))
    expected = (((frames - mean) / std)[:, None] - centroids[None]).__pow__(2).sum(-1).argmin(1)
    np.testing.assert_array_equal(book.units(torch.from_numpy(frames)).numpy(), expected)
    with pytest.raises(ValueError, match="centroids have 6 dimensions but the frames gives 5"):
        book.units(torch.zeros(3, 5))
    units, durations = run_lengths(np.array([5, 5, 5, 2, 5, 5], np.int16))
    assert units.tolist() == [5, 2, 5] and durations.tolist() == [3, 1, 2] and units.dtype == np.int16
    assert Codebook(torch.zeros(32767, 1)).unit_dtype == np.int16 and Codebook(torch.zeros(32768, 1)).unit_dtype \
        == np.int32


def test_purity_and_pnmi_equal_their_definitions_through_scikit_learns_counts():
    rng = np.random.default_rng(2)
    labels = rng.integers(6, size=3000)
    units = np.where(rng.random(3000) < 0.7, labels * 3 + rng.integers(3, size=3000), rng.integers(30, size=3000))
    got = unit_quality(labels, units)
    table = contingency_matrix(labels, units)  # (labels, units) counts
    py = table.sum(1) / table.sum()
    assert got["label_purity"] == pytest.approx(table.max(0).sum() / table.sum())
    assert got["cluster_purity"] == pytest.approx(table.max(1).sum() / table.sum())
    assert got["pnmi"] == pytest.approx(mutual_info_score(labels, units) / -(py * np.log(py)).sum())
    assert unit_quality(labels, labels * 2)["pnmi"] == pytest.approx(1.0)
    rate = bits_per_second([np.array([1, 1, 2, 2, 3, 1]), np.array([4, 4])], seconds=2.0, k=8)
    entropy = -(0.4 * np.log2(0.4) + 3 * 0.2 * np.log2(0.2))  # runs 1 2 3 1 4: unit 1 twice in 5
    assert rate["runs_per_second"] == 2.5 and rate["bits_per_run"] == pytest.approx(entropy)
    assert rate["bits_per_second"] == pytest.approx(2.5 * entropy) and rate["fixed_bits_per_second"] == 7.5


# ----------------------------------------------------------------------------------------- corpus commands
def test_the_help_of_units_fit_and_extract_answers_without_importing_torch():
    script = ("import sys\nfrom w2vbert.cli.parser import main\n"
              "for action in ('fit', 'extract'):\n"
              "    try:\n        main(['units', action, '--help'])\n"
              "    except SystemExit as done:\n        assert done.code == 0, action\n"
              "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.endswith("False\n") and "--max-frames" in done.stdout and "--codebook" in done.stdout



@pytest.fixture(scope="module")
def fitted(models, corpus, tmp_path_factory):
    """A codebook fitted on every file of the corpus, normalised by its own statistics."""
    out = tmp_path_factory.mktemp("units") / "codebook"
    argv = ["units", "fit", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"), "--layer",
            str(LAYER), "-k", str(K), "--max-frames", "400", "--normalize", "--algorithm", "lloyd", "--n-init", "2",
            "--num-workers", "0", "--shard-size", "2", "-o", str(out)]
    assert run_cli(*argv) == 0
    return out, argv


def test_fit_samples_max_frames_over_the_corpus_and_writes_the_codebook_and_its_card(models, fitted, tmp_path):
    out, argv = fitted
    card = json.loads((out / "codebook.json").read_text())
    assert card["frames"] == 400 and card["k"] == K and card["layer"] == LAYER and card["normalised"]
    assert card["normalisation"] == "this corpus (all frames)" and card["inputs"] == 7 and card["seed"] == 0
    assert card["inertia"] == pytest.approx(min(card["inertias"]))
    book = load_codebook(out)
    stats = load_file(out / "sample" / "stats.safetensors")
    np.testing.assert_array_equal(book.mean.numpy(), stats["mean"])
    # another split of the corpus into shards draws the same sample, and so the same codebook
    other = [*argv[:-3], "1", "-o", str(tmp_path / "again")]
    assert run_cli(*other) == 0
    torch.testing.assert_close(load_codebook(tmp_path / "again").centroids, book.centroids, rtol=0, atol=1e-5)
    # embed --stats's file normalises as --normalize does: they are the same statistics
    assert run_cli("embed", *argv[2:6], "--layer", str(LAYER), "--stats", "--num-workers", "0", "--shard-size", "2",
                   "-o", str(tmp_path / "emb")) == 0
    with_file = [a for a in argv[:-2] if a != "--normalize"]
    assert run_cli(*with_file, "--stats", str(tmp_path / "emb" / "stats.safetensors"), "-o", str(tmp_path / "f")) == 0
    from_file = load_codebook(tmp_path / "f")
    assert from_file.card["normalisation"] == str(tmp_path / "emb" / "stats.safetensors")
    torch.testing.assert_close(from_file.centroids, book.centroids, rtol=0, atol=1e-5)


def test_a_fit_whose_sample_ray_actors_draw_gives_the_codebook_of_a_one_process_fit(corpus, fitted, tmp_path):
    pytest.importorskip("ray")
    out, argv = fitted
    done = subprocess.run([sys.executable, "-m", "w2vbert", *argv[:-1], str(tmp_path / "ray"), "--ray",
                           "--ray-actors", "1", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, theirs = load_codebook(out), load_codebook(tmp_path / "ray")
    assert theirs.card["frames"] == 400 and theirs.card["inputs"] == 7 and theirs.card["failed"] == 0
    np.testing.assert_allclose(theirs.mean.numpy(), ours.mean.numpy(), rtol=0, atol=1e-5)  # over every frame
    torch.testing.assert_close(theirs.centroids, ours.centroids, rtol=0, atol=1e-4)
    assert "7 inputs" in done.stdout and "0 failed" in done.stdout
    # a file that cannot be read: listed in the failures table, the others still fitted (exit 1 at the end)
    manifest = tmp_path / "bad.tsv"
    manifest.write_text(f"audio\n{corpus / 'a' / 'hello.wav'}\n{tmp_path / 'missing.wav'}\n"
                        f"{corpus / 'b' / 'numbers.wav'}\n")
    done = subprocess.run([sys.executable, "-m", "w2vbert", "units", "fit", "--manifest", str(manifest), *argv[4:6],
                           "--layer", "1", "-k", "4", "--normalize", "--ray", "--no-progress",
                           "-o", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    failures = pd.read_parquet(tmp_path / "bad" / "sample" / "failures.parquet")
    assert failures.audio.tolist() == [str(tmp_path / "missing.wav")] and "missing.wav" in failures.error[0]
    card = json.loads((tmp_path / "bad" / "codebook.json").read_text())
    assert card["failed"] == 1 and card["inputs"] == 3 and card["k"] == 4


def test_the_corpus_duration_is_the_manifests_or_read_from_a_seeded_draw_of_headers(corpus, monkeypatch):
    from w2vbert.inference import units as fitting

    inputs = bulk.inputs_from_manifest(corpus / "corpus.tsv")
    every = sum(bulk.input_seconds(entry) for entry in inputs)
    assert fitting.corpus_seconds(inputs, seed=0) == pytest.approx(every)  # 7 inputs: every header is read
    stated = [dataclasses.replace(entry, seconds=2.0) for entry in inputs]
    assert fitting.corpus_seconds(stated, seed=0) == 14.0
    monkeypatch.setattr(fitting, "HEADERS_READ", 3)
    read = []
    monkeypatch.setattr(bulk, "input_seconds", lambda entry: read.append(entry.id) or 1.0)
    assert fitting.corpus_seconds(inputs, seed=5) == 7.0 and len(read) == 3  # 3 headers, scaled to 7 inputs
    fitting.corpus_seconds(inputs, seed=5)
    assert read[3:] == read[:3]  # every rank draws the same


def test_the_gathered_sample_is_the_frames_of_smallest_keys_in_input_order_however_often_it_was_cut(fitted):
    from w2vbert.inference.units import gather_sample

    sample = fitted[0] / "sample"
    manifest = json.loads((sample / "manifest.json").read_text())
    seed, fraction = manifest["settings"]["sample_seed"], manifest["settings"]["sample_fraction"]
    rows = pd.read_parquet(sample / "data")
    stored = {}
    for shard in manifest["shards"]:
        stored |= load_file(sample / shard["frames_file"])
    keys = np.concatenate([frame_keys(r.id, r.frames, seed)[sampled_frames(r.id, r.frames, seed, fraction)]
                           for r in rows.itertuples()])
    frames = np.concatenate([stored[r.id] for r in rows.itertuples()])
    for size in (400, 150, 30):  # 150 and 30: cut on the way, several times
        expected = frames[np.sort(np.argsort(keys, kind="stable")[:size])]
        np.testing.assert_array_equal(gather_sample(sample, size), expected)


def test_extracted_units_are_the_nearest_centroids_of_the_frames_embed_gives_and_the_pipelines(
        models, corpus, fitted, tmp_path):
    out, _ = fitted
    argv = ["units", "extract", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"),
            "--codebook", str(out), "--num-workers", "0", "--shard-size", "3"]
    assert run_cli(*argv, "--deduplicate", "-o", str(tmp_path / "runs")) == 0
    assert run_cli(*argv, "-o", str(tmp_path / "units")) == 0
    rows = pd.read_parquet(tmp_path / "units" / "data").set_index("id")
    runs = pd.read_parquet(tmp_path / "runs" / "data").set_index("id")
    book = load_codebook(out)
    embed = pipeline("feature-extraction", model=str(models / "encoder"), layer=LAYER)
    units = pipeline("speech-units", model=str(models / "encoder"), codebook=str(out))
    listed = pd.read_csv(corpus / "corpus.tsv", sep="\t").set_index("id")
    for key, row in rows.iterrows():
        frames = embed(str(corpus / listed.audio[key]))
        normalised = (frames - book.mean.numpy()) / book.std.numpy()
        nearest = ((normalised[:, None] - book.centroids.numpy()[None]) ** 2).sum(-1).argmin(1)
        assert row.units.dtype == np.int16 and row.frames == len(frames)
        np.testing.assert_array_equal(row.units, nearest)
        np.testing.assert_array_equal(units(str(corpus / listed.audio[key]))["units"], nearest)
        merged, lengths = run_lengths(nearest)
        np.testing.assert_array_equal(runs.units[key], merged)
        np.testing.assert_array_equal(runs.durations[key], lengths)


def test_the_ray_predictor_maps_a_batch_of_paths_to_the_pipelines_units_and_a_bad_row_to_its_error(
        models, corpus, fitted, tmp_path):
    from w2vbert.inference.ray_data import W2vBertPredictor

    out, _ = fitted
    predictor = W2vBertPredictor(str(models / "encoder"), "speech-units", codebook=str(out), deduplicate=True)
    paths = [str(corpus / "a" / "hello.wav"), str(tmp_path / "missing.wav"), str(corpus / "b" / "numbers.wav")]
    mapped = predictor({"audio": np.array(paths, dtype=object)})
    units = pipeline("speech-units", model=str(models / "encoder"), codebook=str(out))
    for n in (0, 2):
        expected = units(paths[n], deduplicate=True)
        np.testing.assert_array_equal(mapped["units"][n], expected["units"])
        np.testing.assert_array_equal(mapped["durations"][n], expected["durations"])
        assert mapped["error"][n] is None
    assert mapped["units"][1] is None and "missing.wav" in mapped["error"][1]


def test_a_model_whose_frames_are_not_finite_fails_the_input_instead_of_giving_units(models, fitted):
    from w2vbert import Wav2Vec2BertModel

    model = Wav2Vec2BertModel.from_pretrained(models / "encoder")
    with torch.no_grad():
        model.encoder.layers[0].ffn1.intermediate_dense.weight.fill_(float("nan"))
    units = pipeline("speech-units", model=model, codebook=str(fitted[0]))
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        units(test_bulk.DATA / "hello.wav")


def test_an_extraction_interrupted_and_resumed_or_shared_by_torchrun_writes_what_one_process_writes(
        models, corpus, fitted, tmp_path, monkeypatch):
    out, fit_argv = fitted
    argv = ["units", "extract", "--manifest", str(corpus / "corpus.tsv"), "-m", str(models / "encoder"),
            "--codebook", str(out), "--num-workers", "0", "--shard-size", "2", "--deduplicate", "--no-progress"]
    assert run_cli(*argv, "-o", str(tmp_path / "whole")) == 0
    written = bulk._write_shard

    def write_then_stop(output_dir, k, *rest):
        if k == 2:
            raise KeyboardInterrupt
        written(output_dir, k, *rest)

    monkeypatch.setattr(bulk, "_write_shard", write_then_stop)
    assert run_cli(*argv, "-o", str(tmp_path / "resumed")) == 130
    monkeypatch.setattr(bulk, "_write_shard", written)
    assert run_cli(*argv, "-o", str(tmp_path / "resumed")) == 0
    whole = pd.read_parquet(tmp_path / "whole" / "data")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "resumed" / "data"), whole)
    done = torchrun(*argv, "--dtype", "float32", "-o", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two" / "data"), whole)
    # and a fit shared by two processes draws the same sample: the same codebook
    done = torchrun(*fit_argv[:-2], "--dtype", "float32", "--no-progress", "-o", str(tmp_path / "fit2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("k = 8 on 400 frames") == 1  # rank 0 alone fits
    torch.testing.assert_close(load_codebook(tmp_path / "fit2").centroids, load_codebook(out).centroids, rtol=0,
                               atol=1e-5)


def test_bad_files_are_listed_in_the_failures_table_and_the_others_still_give_a_codebook(
        models, corpus, tmp_path, capsys):
    manifest = tmp_path / "bad.tsv"
    manifest.write_text(f"audio\n{corpus / 'a' / 'hello.wav'}\n{tmp_path / 'missing.wav'}\n"
                        f"{corpus / 'b' / 'numbers.wav'}\n")
    assert run_cli("units", "fit", "--manifest", str(manifest), "-m", str(models / "encoder"), "--layer", "1",
                   "-k", "4", "--num-workers", "0", "-o", str(tmp_path / "book")) == 1
    failures = pd.read_parquet(tmp_path / "book" / "sample" / "failures.parquet")
    assert failures.audio.tolist() == [str(tmp_path / "missing.wav")]
    assert json.loads((tmp_path / "book" / "codebook.json").read_text())["failed"] == 1
    assert "1 failed" in capsys.readouterr().out


def test_bad_inputs_are_one_line_naming_the_numbers(models, corpus, fitted, tmp_path, capsys, monkeypatch):
    out, _ = fitted
    common = ["--num-workers", "0", "-m", str(models / "encoder")]
    clips = ["--manifest", str(corpus / "corpus.tsv")]
    np.save(tmp_path / "wide.npy", np.zeros((4, 48), np.float32))  # the encoder's frames have 32 dimensions
    cases = [
        (["units", "extract", *clips, *common, "--codebook", str(tmp_path / "wide.npy"), "--layer", "1"], 1,
         "centroids have 48 dimensions but layer 1 of the model (its hidden size) gives 32"),
        (["units", "extract", *clips, *common, "--codebook", str(tmp_path / "wide.npy")], 2,
         "does not say which layer it was fitted on: pass --layer"),
        (["units", "fit", *clips, *common, "--layer", "7", "-k", "4"], 1, "layer must be in [-3, 2]"),
        (["units", "fit", *clips, *common, "--layer", "1", "-k", "50", "--max-frames", "30"], 1,
         "the sample holds 30 frames, fewer than k = 50"),
    ]
    for argv, code, message in cases:
        assert run_cli(*argv, "-o", str(tmp_path / "out")) == code, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    (tmp_path / "empty.tsv").write_text("audio\n")
    assert run_cli("units", "fit", "--manifest", str(tmp_path / "empty.tsv"), *common, "--layer", "1",
                   "-o", str(tmp_path / "none")) == 1
    assert "no audio to sample: 0 inputs" in capsys.readouterr().err
    silent = [write_wav(tmp_path / f"silence{n}.wav", np.zeros(16000, np.float32)) for n in range(3)]
    from w2vbert.inference import units as fitting  # a silent corpus is named before k-means runs
    monkeypatch.setattr(fitting, "kmeans", lambda *args, **kwargs: pytest.fail("k-means ran on a silent corpus"))
    assert run_cli("units", "fit", *map(str, silent), *common, "--layer", "1", "-k", "8",
                   "-o", str(tmp_path / "silent")) == 1
    assert "frames sampled from 3 inputs take about k = 8 values or fewer" in capsys.readouterr().err
