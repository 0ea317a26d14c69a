"""The `w2vbert` command line: exit codes, one-line errors, and each subcommand on tiny local models."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from w2vbert import Wav2Vec2BertConfig
from w2vbert.cli.parser import main


def test_info_summarises_a_checkpoint_from_its_config_alone(tmp_path, capsys):
    # The full-size CTC config: the parameter count needs no weights file (meta builds, model/meta_count.py).
    Wav2Vec2BertConfig(architectures=["Wav2Vec2BertForCTC"], vocab_size=40).save_pretrained(tmp_path)
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Wav2Vec2BertForCTC" in out and "vocab_size" in out
    assert f"{580_493_120 + 40 * 1024 + 40:,}" in out  # base model + lm_head (weight and bias)


def test_errors_are_one_line_on_stderr_with_exit_code_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing-model")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("w2vbert: error:") and "missing-model" in err[0]


def test_python_dash_m_runs_the_same_command_line_and_bad_usage_exits_2():
    done = subprocess.run([sys.executable, "-m", "w2vbert", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("w2vbert ")
    done = subprocess.run([sys.executable, "-m", "w2vbert", "no-such-command"], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice" in done.stderr


DATA = Path(__file__).parent / "data"
HELLO, QUICK = DATA / "hello.wav", DATA / "quick.wav"


def test_help_and_version_answer_without_importing_torch():
    script = (
        "import sys\nfrom w2vbert.cli.parser import main\n"
        "for argv in (['--version'], ['--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False" and "w2vbert 0.1.0" in done.stdout


@pytest.fixture(scope="module")
def ctc_model(tmp_path_factory):
    from conftest import tiny_config_kwargs
    from w2vbert import (
        SeamlessM4TFeatureExtractor,
        Wav2Vec2BertForCTC,
        Wav2Vec2BertProcessor,
        Wav2Vec2CTCTokenizer,
        build_vocab,
    )

    path = tmp_path_factory.mktemp("ctc")
    tokenizer = Wav2Vec2CTCTokenizer(vocab=build_vocab(["the quick brown fox"]), unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    Wav2Vec2BertForCTC(config).save_pretrained(path)
    Wav2Vec2BertProcessor(SeamlessM4TFeatureExtractor(padding_value=1.0), tokenizer).save_pretrained(path)
    return path


@pytest.mark.parametrize("extra, message", [
    (["embed", str(HELLO)], "the following arguments are required: -o/--output-dir"),
    (["transcribe", str(HELLO), "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["transcribe", str(HELLO), "--chunk-length", "0"], "argument --chunk-length: must be > 0, got 0"),
    (["transcribe", str(HELLO), "--device", "gpu"], "argument --device: unknown device 'gpu'"),
    (["transcribe", str(HELLO), "--beam-size", "0"], "argument --beam-size: must be >= 1, got 0"),
    (["transcribe", str(HELLO), "-f", "all"], "-f all writes one file per format: pass --output-dir"),
])
def test_usage_mistakes_exit_2_with_one_line_naming_the_argument(ctc_model, capsys, extra, message):
    try:
        code = main([*extra, "-m", str(ctc_model)])
    except SystemExit as stopped:  # argparse's own errors
        code = stopped.code
    assert code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_bad_usage_not_a_traceback(ctc_model, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["transcribe", str(HELLO), "-m", str(ctc_model), "--device", "cuda"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "CUDA is not available" in err and "Traceback" not in err


def test_output_problems_are_found_before_any_audio_is_read(ctc_model, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["transcribe", str(HELLO), "-m", str(ctc_model), "-o", str(tmp_path / "a-file")]) == 2
    assert "--output-dir" in (err := capsys.readouterr().err) and "is a file, not a directory" in err
    assert main(["transcribe", str(HELLO), "-m", str(ctc_model), "-o", str(tmp_path / "a-file" / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "clip.wav").write_bytes(HELLO.read_bytes())
    clash = [str(tmp_path / "a" / "clip.wav"), str(tmp_path / "b" / "clip.wav")]
    assert main(["transcribe", *clash, "-m", str(ctc_model), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "would all be written to" in err and "clip.txt" in err and not list((tmp_path / "out").iterdir())


def test_a_checkpoint_with_missing_tensors_is_refused_by_the_inference_commands(ctc_model, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in ctc_model.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    state = {k: v for k, v in load_file(ctc_model / "model.safetensors").items() if not k.startswith("lm_head")}
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    assert main(["transcribe", str(HELLO), "-m", str(broken), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 tensors of the Wav2Vec2BertForCTC were not in the checkpoint" in err[0]
    assert "lm_head.weight" in err[0]


def test_formats_print_to_stdout_without_an_output_dir_and_json_is_the_same_with_all(ctc_model, tmp_path, capsys):
    base = ["transcribe", str(QUICK), "-m", str(ctc_model), "--no-progress"]
    assert main([*base, "-f", "srt"]) == 0
    assert " --> " in capsys.readouterr().out
    assert main([*base, "--timestamps", "word"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"text", "chunks"}
    assert main([*base, "-f", "json", "-o", str(tmp_path / "json")]) == 0
    assert main([*base, "-f", "all", "-o", str(tmp_path / "all")]) == 0
    capsys.readouterr()
    assert (tmp_path / "json" / "quick.json").read_text() == (tmp_path / "all" / "quick.json").read_text()
    assert json.loads((tmp_path / "json" / "quick.json").read_text()) == printed


def test_progress_counts_audio_seconds_of_a_single_long_file(ctc_model, tmp_path, capsys):
    import av
    import numpy as np

    from w2vbert import load_audio

    long = tmp_path / "long.wav"
    with av.open(str(long), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        audio = (np.tile(load_audio(QUICK), 15) * 32767).astype(np.int16)[None]  # 41 s
        frame = av.AudioFrame.from_ndarray(audio, format="s16", layout="mono")
        frame.rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert main(["transcribe", str(long), "-m", str(ctc_model), "--chunk-length", "10"]) == 0
    err = capsys.readouterr().err
    assert "41/41 s audio" in err and "0/41 s audio" in err  # a bar over the file's seconds, not over 1 file


def test_a_bad_language_model_is_reported_once_and_its_banner_stays_quiet(ctc_model, tmp_path):
    good = tmp_path / "lm.arpa"
    words = ["<s>", "</s>", "the", "quick", "brown", "fox"]
    lines = ["\\data\\", f"ngram 1={len(words)}", "ngram 2=1", "", "\\1-grams:", *(f"-1.0\t{w}\t0" for w in words)]
    good.write_text("\n".join([*lines, "", "\\2-grams:", "-0.2\tthe quick", "", "\\end\\", ""]))
    bad = tmp_path / "bad.arpa"
    bad.write_text(good.read_text().replace("ngram 1=6", "ngram 1=60"))  # a count the file does not hold
    files = [str(HELLO), str(QUICK), str(HELLO)]
    command = [sys.executable, "-m", "w2vbert", "transcribe", *files, "-m", str(ctc_model), "--no-progress", "--lm"]
    done = subprocess.run([*command, str(bad)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("w2vbert: error:") == 1 and not done.stdout
    done = subprocess.run([*command, str(good)], capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 3
    assert "Loading the LM" not in done.stderr and not done.stderr.strip()


def test_a_config_json_with_a_wrong_field_is_one_line_naming_the_file_and_the_field(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2-bert", "hidden_size": "144"}')
    assert main(["info", str(tmp_path)]) == 1
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'config.json'}: invalid Wav2Vec2BertConfig: hidden_size must be an integer" in err


def test_finetune_refuses_a_device_this_machine_lacks_as_bad_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["finetune", "--model", "m", "--train", "t.tsv", "--output-dir", str(tmp_path), "--device", "gpu"])
    assert stopped.value.code == 2 and "argument --device: unknown device 'gpu'" in capsys.readouterr().err


def test_every_subcommands_help_answers_without_importing_torch():
    # One process runs `w2vbert <command> --help` for each command in turn: torch must stay out of sys.modules.
    script = (
        "import sys\nfrom w2vbert.cli.parser import COMMANDS, main\n"
        "for name in COMMANDS:\n"
        "    try:\n        main([name, '--help'])\n"
        "    except SystemExit as done:\n        assert done.code == 0, name\n"
        "    if 'torch' in sys.modules:\n        print('torch imported by', name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "torch imported" not in done.stdout and "--no-progress" in done.stdout


def test_the_choices_help_lists_without_torch_are_those_of_the_tables_they_stand_for():
    from w2vbert.export.names import EXPORT_DTYPE_NAMES
    from w2vbert.export.onnx import EXPORT_DTYPES
    from w2vbert.loading.devices import DTYPES
    from w2vbert.training.names import FINETUNING_TASKS, PRETRAINING_TASK
    from w2vbert.training.tasks import TASKS

    assert FINETUNING_TASKS == tuple(name for name, task in TASKS.items() if task.target_column is not None)
    assert set(TASKS) == {*FINETUNING_TASKS, PRETRAINING_TASK}
    assert EXPORT_DTYPES == {"fp32": DTYPES["float32"], "fp16": DTYPES["float16"]} == {
        name: DTYPES[dtype] for name, dtype in EXPORT_DTYPE_NAMES.items()}


LONG_COMMANDS = ("transcribe", "align", "classify", "embed", "finetune", "pretrain")


def test_every_command_that_runs_long_work_shares_the_run_options():
    from w2vbert.cli.parser import build_parser

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in LONG_COMMANDS:
        options = {option for action in subcommands[name]._actions for option in action.option_strings}
        assert {"--no-progress", "--device"} <= options, name


def test_align_shows_progress_on_stderr_unless_no_progress(ctc_model, capsys):
    assert main(["align", str(HELLO), "the fox", "-m", str(ctc_model)]) == 0
    captured = capsys.readouterr()
    assert "s audio" in captured.err and '"words"' in captured.out
    assert main(["align", str(HELLO), "the fox", "-m", str(ctc_model), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and '"words"' in captured.out


@pytest.mark.parametrize("device", ["xpu", "mps", "meta"])
def test_a_device_this_machine_lacks_is_one_line_naming_it_and_those_available_exit_2(ctc_model, capsys, device):
    from w2vbert.loading.devices import available_devices

    if device in available_devices():
        pytest.skip(f"this machine has {device}")
    with pytest.raises(SystemExit) as stopped:
        main(["transcribe", str(HELLO), "-m", str(ctc_model), "--device", device])
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert stopped.value.code == 2 and "Traceback" not in line
    assert f"argument --device: device={device!r} is not available here: available devices are cpu" in line


# ------------------------------------------------------------------------------------- missing optional extras
def test_every_extra_of_pyproject_names_the_modules_it_brings():
    from w2vbert.utils.extras import EXTRAS

    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(EXTRAS) == set(extras) - {"dev", "bench-peers"}  # what users install; not the developers' sets


def assert_names_the_extra(message: str, extra: str):
    assert "\n" not in message and "Traceback" not in message
    assert f"pip install 'w2vbert[{extra}]' (from the package index)" in message
    assert f"pip install '.[{extra}]' (in a clone of the repository)" in message


@pytest.mark.parametrize("extra", ["lm", "train", "lora", "bulk", "ray", "vad", "onnx", "serve"])
def test_a_missing_module_of_each_extra_is_one_line_naming_the_extra(monkeypatch, extra):
    from w2vbert.utils.extras import EXTRAS, MissingExtra, optional_import, require_extra

    for module in EXTRAS[extra]:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: `import module` raises ImportError
        with pytest.raises(MissingExtra) as missing:
            optional_import(module, "this feature")
        assert_names_the_extra(str(missing.value), extra)
        assert str(missing.value).startswith(f"this feature needs {module}, which is not installed")
    with pytest.raises(MissingExtra):
        require_extra(extra, "this feature")


def _call(module: str, function: str, *args):
    """A use of the Python API: `module.function(*args)`."""
    return lambda monkeypatch, tmp_path: getattr(importlib.import_module(module), function)(*args)


def _serving_app(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "w2vbert.serving.app", raising=False)  # imported afresh, as by a new process
    importlib.import_module("w2vbert.serving.app")


def _export(monkeypatch, tmp_path):
    from conftest import tiny_config_kwargs
    from w2vbert import Wav2Vec2BertModel
    from w2vbert.export.onnx import export_onnx

    export_onnx(Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs())), tmp_path / "model.onnx")


@pytest.mark.parametrize("extra, module, use", [
    ("lm", "flashlight.lib.text.decoder", _call("w2vbert.text.decoding", "BeamSearchDecoder")),
    ("vad", "silero_vad", _call("w2vbert.audio.vad", "silero")),
    ("bulk", "pyarrow", _call("w2vbert.inference.corpus_files", "pyarrow_modules")),
    ("lora", "peft.tuners.lora", _call("w2vbert.training.lora", "lora_layers", torch.nn.Linear(2, 2))),
    ("onnx", "onnxscript", _export),
    ("serve", "fastapi", _serving_app),
])
def test_each_python_api_that_needs_an_extra_says_which_in_one_line(monkeypatch, tmp_path, extra, module, use):
    from w2vbert.utils.extras import MissingExtra

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtra) as missing:
        use(monkeypatch, tmp_path)
    assert_names_the_extra(str(missing.value), extra)


def test_training_without_tensorboard_logs_one_line_naming_the_train_extra(monkeypatch, tmp_path, caplog):
    from w2vbert.training.metrics import MetricsLog

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert MetricsLog(tmp_path, 0, tensorboard=True).writer is None
    assert_names_the_extra(caplog.records[-1].getMessage(), "train")


def test_the_commands_say_a_missing_extra_in_one_line_and_exit_1(ctc_model, tmp_path):
    # One process runs each command with one module hidden (None in sys.modules: its import fails) and reports the
    # exit code and stderr: the command line as a user without that extra sees it.
    cases = [
        ("serve", "fastapi", ["serve", "-m", str(ctc_model)]),
        ("onnx", "onnxscript", ["export", str(ctc_model), str(tmp_path / "onnx")]),
        ("lm", "flashlight.lib.text.decoder", ["transcribe", str(HELLO), "-m", str(ctc_model), "--beam-size", "2"]),
        ("vad", "silero_vad", ["transcribe", str(HELLO), "-m", str(ctc_model), "--vad", "--no-progress"]),
        ("bulk", "pyarrow", ["transcribe", "--input-dir", str(DATA), "-m", str(ctc_model), "-o", str(tmp_path / "c"),
                             "--no-progress", "--num-workers", "0"]),
    ]
    script = (
        "import contextlib, io, json, sys\nfrom w2vbert.cli.parser import main\nreports = []\n"
        f"for module, argv in {[(module, argv) for _, module, argv in cases]!r}:\n"
        "    hidden, sys.modules[module] = sys.modules.get(module), None\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n        code = main(argv)\n"
        "    sys.modules[module] = hidden\n    reports.append((code, err.getvalue()))\n"
        "print(json.dumps(reports))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for (extra, _, argv), (code, err) in zip(cases, json.loads(done.stdout.splitlines()[-1]), strict=True):
        lines = [line for line in err.splitlines() if not line.startswith("w2vbert: WARNING")]
        assert code == 1 and len(lines) == 1, (argv, err)
        assert lines[0].startswith("w2vbert: error: ")
        assert_names_the_extra(lines[0], extra)
