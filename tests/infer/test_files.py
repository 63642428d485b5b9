"""pdgan_infer.files: which output folders a tool may write into, and which files in them it may replace."""
from __future__ import annotations

import json
import os

import pytest

from pdgan_infer.files import OutputError, check_owned_files, check_owned_output, write_owned_marker

MARKER = ".pdgan-test.json"


def test_new_and_empty_folders_are_free(tmp_path):
    assert check_owned_output(tmp_path / "new", MARKER) == []
    (tmp_path / "empty").mkdir()
    assert check_owned_output(tmp_path / "empty", MARKER) == []


def test_folder_with_user_files_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "NOTES.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"was not written by pdgan \(no \.pdgan-test\.json\).*--overwrite"):
        check_owned_output(tmp_path, MARKER)
    assert check_owned_output(tmp_path, MARKER, overwrite=True) == []
    assert (tmp_path / "NOTES.txt").read_text() == "mine"


def test_marker_round_trip_lists_the_files(tmp_path):
    write_owned_marker(tmp_path, MARKER, ["b/2.txt", "a.txt", "a.txt"], tool="pdgan-test")
    record = json.loads((tmp_path / MARKER).read_text())
    assert record["written_by"] == "pdgan" and record["tool"] == "pdgan-test"
    assert check_owned_output(tmp_path, MARKER) == ["a.txt", "b/2.txt"]


@pytest.mark.parametrize("marker", [
    "not json", json.dumps({"files": ["a"]}), json.dumps({"written_by": "pdgan", "files": ["../outside"]}),
    json.dumps({"written_by": "pdgan", "files": ["/etc/passwd"]}), json.dumps({"written_by": "pdgan", "files": [1]})])
def test_a_marker_that_is_not_pdgans_owns_nothing(tmp_path, marker):
    (tmp_path / MARKER).write_text(marker)
    with pytest.raises(OutputError, match="was not written by pdgan"):
        check_owned_output(tmp_path, MARKER)


def test_symlinked_output_folder_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a symlink"):
            check_owned_output(tmp_path / "link", MARKER, overwrite)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_owned_output(tmp_path / "file", MARKER)


def test_owned_files_replace_only_pdgans(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text("user's")
    (tmp_path / "m" / "1" / "model.py").write_text("pdgan's")
    check_owned_files(tmp_path, ["m/1/model.py", "m/new.txt"], owned=["m/1/model.py"])
    with pytest.raises(OutputError, match=r"m/config\.pbtxt exists and was not written by pdgan"):
        check_owned_files(tmp_path, ["m/config.pbtxt"], owned=["m/1/model.py"])
    check_owned_files(tmp_path, ["m/config.pbtxt"], owned=[], overwrite=True)


def test_owned_files_never_write_through_symlinks_or_into_fifos(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m").symlink_to(outside)
    with pytest.raises(OutputError, match="is a symlink"):
        check_owned_files(tmp_path / "out", ["m/config.pbtxt"], owned=["m/config.pbtxt"], overwrite=True)
    os.mkfifo(tmp_path / "out" / "fifo")
    with pytest.raises(OutputError, match="not a regular file"):
        check_owned_files(tmp_path / "out", ["fifo"], owned=["fifo"], overwrite=True)
