"""core.fileio: atomic writes (old or new file, never half of one) and output/input path overlap."""
from __future__ import annotations

import os

import pytest

from core.errors import UserError
from core.fileio import atomic_write, atomic_write_text, check_distinct_paths


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # the temporary file is gone
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def _paths(tmp_path):
    (tmp_path / "in.mp4").write_bytes(b"video")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "in.mp4")
    (tmp_path / "sub").mkdir()
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub")
    return tmp_path


@pytest.mark.parametrize("outputs, inputs, message", [
    ({"--out": "in.mp4"}, {"--video": "in.mp4"}, "would overwrite the input --video"),
    ({"--out": "link.mp4"}, {"--video": "in.mp4"}, "would overwrite the input --video"),  # through a symlink
    ({"--json": "in.mp4"}, {"--video": "link.mp4"}, "would overwrite the input --video"),
    # symlinks resolved before "..": dirlink/.. is sub/.., the folder holding in.mp4
    ({"--csv": "dirlink/../in.mp4"}, {"--video": "in.mp4"}, "would overwrite the input --video"),
    ({"--out": "x.mp4", "--json": "x.mp4"}, {}, "are the same file"),
    ({"--json": "sub/y", "--csv": "dirlink/y"}, {}, "are the same file"),  # two outputs via a symlinked folder
    ({"--out": "o.mp4", "--json": "o.json", "--csv": None}, {"--video": "in.mp4"}, None),
])
def test_outputs_are_never_inputs_or_each_other(tmp_path, monkeypatch, outputs, inputs, message):
    monkeypatch.chdir(_paths(tmp_path))
    if message is None:
        check_distinct_paths(outputs, inputs)
    else:
        with pytest.raises(UserError, match=message) as info:
            check_distinct_paths(outputs, inputs)
        assert "\n" not in str(info.value)
    assert (tmp_path / "in.mp4").read_bytes() == b"video"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".rmpe-tmp")]
