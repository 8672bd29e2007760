"""core.models.verify: the stamp makes the check at load a stat; any change is found and named."""
from __future__ import annotations

import hashlib
import os

import pytest

import core.models.verify as verify
from core.errors import UserError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_stamped_file_is_a_stat_and_a_change_is_named(tmp_path, monkeypatch):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"weights" * 100)
    verify.check_file(model, _sha(model.read_bytes()))  # hashed once, then stamped
    assert (tmp_path / verify.STAMP_NAME).exists()

    def no_hashing(_path):
        raise AssertionError("hashed a stamped, unchanged file")

    monkeypatch.setattr(verify, "file_sha256", no_hashing)
    verify.check_file(model, _sha(b"weights" * 100))  # the cheap path: size + mtime match the stamp
    monkeypatch.undo()

    data = bytearray(model.read_bytes())
    data[10] ^= 1
    model.write_bytes(bytes(data))
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 1_000_000))  # another mtime
    with pytest.raises(UserError, match=r"m\.tflite is corrupted or was modified .*the manifest says.*"
                                        r"repair: python main.py models install$"):
        verify.check_file(model, _sha(b"weights" * 100))


@pytest.mark.parametrize("suffix", [".safetensors", ".onnx"])
def test_derived_cache_checked_against_its_stamp_and_dropped_for_rebuild(tmp_path, suffix):
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"source")
    derived = tflite.with_suffix(suffix)
    derived.write_bytes(b"derived" * 50)
    verify.record(derived)  # as the writer of the cache does
    verify.check_model(tflite, _sha(b"source"))
    derived.write_bytes(b"derivee" * 50)  # same size, other bytes
    os.utime(derived, ns=(derived.stat().st_atime_ns, derived.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(UserError, match=f"m\\{suffix} is corrupted or was modified .*verified when it was written"):
        verify.check_model(tflite, _sha(b"source"))
    assert verify.drop_damaged_derived(tflite) == [derived] and not derived.exists()
    verify.check_model(tflite, _sha(b"source"))  # nothing left to check until it is rebuilt


def test_missing_file_is_a_problem_not_a_crash(tmp_path):
    assert "missing" in verify.problem(tmp_path / "none.tflite", "0" * 64)
