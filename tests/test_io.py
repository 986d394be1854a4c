import json
import os

import pytest

from hpcxlt.io import publish_dir, read_json, write_json_atomic, write_text_atomic


def test_write_json_atomic_round_trips_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "deep" / "state.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"a": [1, 2], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "record.json"
    write_json_atomic(path, {"score": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(path, {"score": Unserialisable()})
    assert json.loads(path.read_text()) == {"score": 1}
    assert sorted(os.listdir(tmp_path)) == ["record.json"]


def test_write_text_atomic_replaces_content(tmp_path):
    path = tmp_path / "a.txt"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two ü")
    assert path.read_text(encoding="utf-8") == "two ü"


def test_publish_dir_moves_a_whole_group_readable_folder_in_and_never_leaves_half_of_one(tmp_path):
    out = tmp_path / "model"

    def private(tmp):  # as safetensors writes its files, whatever the umask
        (tmp / "w.bin").write_bytes(b"1")
        os.chmod(tmp / "w.bin", 0o600)

    old = os.umask(0o027)
    try:
        publish_dir(out, private)
    finally:
        os.umask(old)
    assert (out / "w.bin").read_bytes() == b"1" and (out / "w.bin").stat().st_mode & 0o777 == 0o640

    def broken(tmp):
        (tmp / "w.bin").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_dir(out, broken, replace=True)
    with pytest.raises(OSError):  # another process's folder is not replaced unless asked
        publish_dir(out, lambda tmp: (tmp / "w.bin").write_bytes(b"2"))
    assert (out / "w.bin").read_bytes() == b"1" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    publish_dir(out, lambda tmp: (tmp / "w.bin").write_bytes(b"2"), replace=True)
    assert (out / "w.bin").read_bytes() == b"2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
