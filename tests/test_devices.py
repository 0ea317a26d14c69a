"""What the machine runs natively: `--dtype auto`, the warning for emulated bfloat16, `w2vbert info --system`.

The CPU is simulated by replacing `devices.cpu_features`, so both kinds of CPU this project meets (an AMX Xeon and
an AVX2-only EPYC) are tested on whichever one runs the tests.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from w2vbert.cli.parser import main
from w2vbert.loading import devices
from w2vbert.loading.devices import fastest_dtype, native, warn_if_emulated

CPU = torch.device("cpu")
AMX_XEON = {name: True for name in devices.CPU_FEATURES} | {"amx_fp16": False}
AVX2_EPYC = {name: name == "avx2" for name in devices.CPU_FEATURES}


@pytest.fixture
def cpu(monkeypatch):
    def simulate(features: dict[str, bool]) -> None:
        monkeypatch.setattr(devices, "cpu_features", lambda: features)
        monkeypatch.setattr(devices, "_warned", set())

    return simulate


def test_auto_is_bfloat16_where_the_cpu_has_amx_and_float32_where_it_emulates_bfloat16(cpu):
    cpu(AMX_XEON)
    assert native(CPU, torch.bfloat16) and fastest_dtype(CPU) == torch.bfloat16
    cpu(AVX2_EPYC)
    assert not native(CPU, torch.bfloat16) and fastest_dtype(CPU) == torch.float32
    assert native(CPU, torch.float32)


def test_emulated_bfloat16_is_said_once_and_native_bfloat16_not_at_all(cpu, caplog):
    cpu(AVX2_EPYC)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        warn_if_emulated(CPU, torch.bfloat16)
        warn_if_emulated(CPU, torch.bfloat16)
        warn_if_emulated(CPU, torch.float32)
    assert len(caplog.records) == 1
    assert "bfloat16 is emulated on this CPU" in caplog.text and "use float32" in caplog.text
    caplog.clear()
    cpu(AMX_XEON)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        warn_if_emulated(CPU, torch.bfloat16)
    assert not caplog.records


def test_dtype_auto_loads_the_fastest_mode_and_a_pipeline_in_bfloat16_warns_on_an_avx2_cpu(cpu, caplog):
    from w2vbert import pipeline
    from w2vbert.inference.pipelines import load_task_model

    model_dir = str(Path(__file__).resolve().parent.parent / "examples" / "demo-model")
    for features, expected in ((AMX_XEON, torch.bfloat16), (AVX2_EPYC, torch.float32)):
        cpu(features)
        assert load_task_model("automatic-speech-recognition", model_dir, "cpu", "auto").dtype == expected
    cpu(AVX2_EPYC)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        pipeline("automatic-speech-recognition", model_dir, torch_dtype="bfloat16")
    assert "bfloat16 is emulated" in caplog.text


def test_info_system_names_the_cpu_its_instruction_sets_and_the_auto_mode(cpu, capsys):
    cpu(AVX2_EPYC)
    assert main(["info", "--system"]) == 0
    out = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.strip().splitlines())
    assert out["cpu --dtype auto"] == "float32" and out["amx_bf16"] == "no" and out["avx2"] == "yes"
    assert out["cpu --quantize int8"].startswith("PyTorch dynamic int8")
    assert out["cpu bfloat16"] == "emulated (slow)" and int(out["torch threads"]) >= 1
    assert main(["info"]) == 2
    assert "name a model, or pass --system" in capsys.readouterr().err


def test_the_command_line_runs_the_fastest_native_mode_by_default_and_int8_with_it(cpu, monkeypatch, capsys):
    from w2vbert.inference import pipelines
    from w2vbert.model.quantization import OneDNNInt8Linear

    loaded = []
    load_for_task = pipelines.load_for_task

    def spy(task, source, **options):
        model, info = load_for_task(task, source, **options)
        loaded.append(model)
        return model, info

    monkeypatch.setattr(pipelines, "load_for_task", spy)
    root = Path(__file__).resolve().parent.parent
    command = ["transcribe", str(root / "tests" / "data" / "quick.wav"), "-m", str(root / "examples" / "demo-model"),
               "--no-progress"]
    for features, expected in ((AMX_XEON, torch.bfloat16), (AVX2_EPYC, torch.float32)):
        cpu(features)
        assert main(command) == 0
        assert loaded[-1].dtype == expected
    assert "quick" in capsys.readouterr().out
    # (the simulated AMX run below computes garbage on a real CPU without VNNI: only the mode is checked)
    cpu(AMX_XEON)  # int8 keeps the rest of the model in the auto dtype: oneDNN's int8 matmuls with bfloat16
    assert main([*command, "--quantize", "int8"]) == 0
    assert loaded[-1].dtype == torch.bfloat16 and any(isinstance(m, OneDNNInt8Linear) for m in loaded[-1].modules())
    cpu(AVX2_EPYC)  # and PyTorch's dynamic int8 with float32 where bfloat16 is emulated
    assert main([*command, "--quantize", "int8"]) == 0
    assert loaded[-1].dtype == torch.float32 and not any(isinstance(m, OneDNNInt8Linear) for m in loaded[-1].modules())
