"""Atomic outputs and JSON objects: what every writer and reader of the package relies on."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat

import numpy as np
import pytest
from safetensors import SafetensorError
from safetensors.numpy import save_file

from w2vbert.utils.files import atomic_output, atomic_write_text, new_directory_beside, read_json_object


def test_two_writers_of_one_file_never_share_a_temporary_name_and_one_whole_file_wins(tmp_path):
    target = tmp_path / "clip.txt"
    with atomic_output(target) as first, atomic_output(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("A" * 100_000)
        second.write_text("B" * 100_000)
    assert target.read_text() in ("A" * 100_000, "B" * 100_000)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.txt"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "clip.txt", "old")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["clip.txt"]


def _write_many(path: str, letter: str) -> None:
    for _ in range(200):
        atomic_write_text(path, letter * 20_000)


def test_two_processes_writing_one_file_at_once_never_fail_or_mix(tmp_path):
    target = tmp_path / "clip.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(target), letter)) for letter in "AB"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0]
    assert target.read_text() in ("A" * 20_000, "B" * 20_000)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.json"]


def test_json_objects_that_are_not_utf8_json_or_objects_name_the_file(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"hidden_size": "\xff"}')
    with pytest.raises(ValueError, match=r"config.json is not UTF-8 text \(byte 17"):
        read_json_object(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json must hold a JSON object, got list"):
        read_json_object(tmp_path / "config.json")


def test_atomic_outputs_get_the_mode_open_gives_under_the_umask_not_mkstemps_0600(tmp_path, umask):
    written = [atomic_write_text(tmp_path / "run.json", "{}\n")]
    with atomic_output(tmp_path / "shard.safetensors") as temporary:
        save_file({"x": np.zeros(3, np.float32)}, temporary)  # safetensors writes a 0o600 file of its own
    written.append(tmp_path / "shard.safetensors")
    folder = new_directory_beside(tmp_path / "model")
    assert {stat.S_IMODE(path.stat().st_mode) for path in written} == {0o666 & ~umask}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask


def test_a_full_disk_names_the_file_and_says_the_disk_is_full_and_leaves_nothing(tmp_path):
    def full(temporary):
        temporary.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a write says: no file named

    with pytest.raises(OSError, match=rf"^cannot write {tmp_path / 'run.json'}: the disk is full \(No space left "
                                      r"on device\)$") as caught, atomic_output(tmp_path / "run.json") as temporary:
        full(temporary)
    assert caught.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())
    with pytest.raises(OSError, match=r"shard.safetensors: the disk is full"), \
            atomic_output(tmp_path / "shard.safetensors") as temporary:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
