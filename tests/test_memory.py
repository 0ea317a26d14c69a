"""A forward on the CPU keeps the process's freed memory under 64 MiB an allocation for the next activations, and all
of it with W2VBERT_KEEP_FREED_MEMORY=1 (utils/memory.py): large tensors freed and allocated again cost no new pages,
where glibc's own thresholds (W2VBERT_KEEP_FREED_MEMORY=0) hand them back and fault them in again (550,000 page
faults per forward of 4 x 10 s on the 600M model in fp32). The 120 s bias-path peak that unbounded thresholds
raised is test_model.py's Shaw attention memory test."""

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
    def faults_of_an_activation():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(MIB * 2**18)  # MIB MiB written, then freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_an_activation()  # the first one may grow the heap
    print(min(faults_of_an_activation() for _ in range(3)))
    """
)


def faults(keep: str | None, mib: int = 64) -> int:
    """Page faults of a `mib` MiB activation written and freed, in a process that ran a forward with
    W2VBERT_KEEP_FREED_MEMORY=`keep` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "W2VBERT_KEEP_FREED_MEMORY"}
    if keep is not None:
        env["W2VBERT_KEEP_FREED_MEMORY"] = keep
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", SCRIPT.replace("MIB", str(mib))], env=env, capture_output=True,
                          text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(glibc() is None, reason="glibc's malloc only (Linux)")
def test_a_cpu_forward_reuses_activations_under_64_mib_by_default_and_all_of_them_when_asked():
    assert faults(None, mib=48) < 100  # 12,288 pages of 4 KB: reused (an attention bias chunk of 4 x 10 s)
    assert faults("0", mib=48) > 10_000  # glibc's own thresholds: handed back at free, every page faulted again
    assert faults(None) > 10_000  # 64 MiB and more: handed back (kept, the heap of long clips fragmented)
    assert faults("1") < 100  # everything kept when asked
