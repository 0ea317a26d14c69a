"""With W2VBERT_KEEP_FREED_MEMORY=1 a forward on the CPU keeps the process's freed memory for the next activations
(utils/memory.py): large tensors freed and allocated again cost no new pages, where glibc's defaults, which stay
unless asked (the heap can fragment: see the module), hand them back and fault them in again (460,000 page faults
per forward of 4 x 10 s on the 600M model)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from w2vbert.utils.memory import glibc

SCRIPT = textwrap.dedent(
    """
    import resource, torch, w2vbert
    from conftest import tiny_config_kwargs
    model = w2vbert.Wav2Vec2BertModel(w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad():
        model(torch.randn(1, 20, 160))
    def faults_of_a_64_mb_activation():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 2**20)  # 64 MB written, then freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_a_64_mb_activation()  # the first one may grow the heap
    print(min(faults_of_a_64_mb_activation() for _ in range(3)))
    """
)


def faults(keep: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "W2VBERT_KEEP_FREED_MEMORY"}
    if keep is not None:
        env["W2VBERT_KEEP_FREED_MEMORY"] = keep
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(glibc() is None, reason="glibc's malloc only (Linux)")
def test_a_cpu_forward_asked_to_keep_freed_memory_reuses_activations_without_page_faults():
    assert faults("1") < 100  # 64 MB are 16,384 pages of 4 KB: reused, none faulted in again
    assert faults(None) > 10_000  # glibc's defaults, unless asked: handed back at free, every page faulted again
    assert faults("0") > 10_000
