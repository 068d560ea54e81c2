"""sprig.core.files: a write either lands whole or leaves the previous file, and never a temp file."""
import numpy as np
import pytest

from sprig.core.files import atomic_path, write_text_atomic


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "v.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError), atomic_path(target, ".npy") as tmp:
        np.save(tmp, np.arange(5))  # written in full, then the writer fails before the rename
        raise RuntimeError("killed")
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["v.npy"]


def test_suffix_keeps_numpy_from_renaming_the_temp(tmp_path):
    target = tmp_path / "m.npz"
    with atomic_path(target, ".npz") as tmp:
        np.savez(tmp, x=np.ones(2))
    assert np.load(target)["x"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
