"""pdgan_infer.files: the ownership record of atomic writes and the one output rule (`check_outputs`): a user's
file or folder is refused without overwrite, an output inside an input or through a symlinked folder always;
and the whole-folder markers (which output folders a tool may write into, which files in them it may replace)."""
from __future__ import annotations

import json
import os
import threading

import pytest

from pdgan_infer import files
from pdgan_infer.files import (
    MANIFEST,
    OutputError,
    atomic_write_bytes,
    check_outputs,
    check_owned_files,
    check_owned_output,
    record_written,
    write_owned_marker,
    written_by_pdgan,
)


def refused(match, outputs, *args, **kwargs):
    with pytest.raises(OutputError, match=match) as e:
        check_outputs(outputs, *args, **kwargs)
    assert "\n" not in str(e.value)


def test_atomic_writes_are_recorded_and_an_edit_makes_the_file_a_users(tmp_path):
    out = tmp_path / "r.json"
    atomic_write_bytes(out, b"{}")
    records = [json.loads(line) for line in (tmp_path / MANIFEST).read_text().splitlines()]
    st = os.stat(out)
    assert records == [{"name": "r.json", "size": 2, "mtime_ns": st.st_mtime_ns}]
    assert written_by_pdgan(out)
    check_outputs({"--json": out})  # its own file: written again without --overwrite
    out.write_bytes(b"{}")  # same size, a new modification time: someone else wrote it
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert not written_by_pdgan(out)
    refused(r"--json .*r.json exists and was not written by pdgan; give --overwrite to replace it", {"--json": out})
    check_outputs({"--json": out}, overwrite=True)
    check_outputs({"--json": out}, overwrite=None)  # the caller decides (pdgan-generate's resume)


def test_users_file_folder_and_symlinks_are_refused(tmp_path):
    (tmp_path / "user.png").write_bytes(b"mine")
    refused("user.png exists and was not written by pdgan", {"--png": tmp_path / "user.png"})
    refused("give overwrite=True", {"x": tmp_path / "user.png"}, how="overwrite=True")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.json")
    refused("dangling.json is a symlink; give --overwrite", {"--json": tmp_path / "dangling.json"})
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    refused(r"--out .*user holds files that pdgan did not write; give --overwrite", {"--out": folder},
            folders={"--out"})
    check_outputs({"--out": folder}, folders={"--out"}, overwrite=True)
    check_outputs({"--out": tmp_path / "new"}, folders={"--out"})
    (tmp_path / "empty").mkdir()
    check_outputs({"--out": tmp_path / "empty"}, folders={"--out"})
    os.symlink(tmp_path / "empty", tmp_path / "link")
    for overwrite in (False, True):  # overwrite or not: the writes would land outside the path named
        refused(r"link is a symlink \(to .*empty\): the files would be written outside it",
                {"--out": tmp_path / "link"}, folders={"--out"}, overwrite=overwrite)


def test_a_rewrite_replaces_only_its_own_files(tmp_path):
    folder = tmp_path / "model"
    atomic_write_bytes(folder / "config.json", b"{}")  # the folder has a manifest: pdgan wrote here
    (folder / "README.md").write_text("the user's own card")
    contents = {"--out": ["config.json", "README.md", "model.safetensors"]}
    refused(r"README.md exists and was not written by pdgan", {"--out": folder}, folders={"--out"}, contents=contents)
    (folder / "README.md").unlink()
    check_outputs({"--out": folder}, folders={"--out"}, contents=contents)


def test_outputs_inside_an_input_are_refused_even_with_overwrite(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.csv").write_text("filename,label\n")
    for out in (data / "labels.csv", data / "sub" / "x.npz", data):
        refused("(is the input|is inside the input)", {"--json": out}, [data], overwrite=True)
    os.symlink(data, tmp_path / "alias")  # through a symlink too
    refused("is inside the input", {"--json": tmp_path / "alias" / "r.json"}, [data])
    check_outputs({"--json": tmp_path / "data2" / "r.json"}, [data])  # a sibling whose name starts alike


def test_manifest_is_never_followed_or_blocked_on(tmp_path):
    (tmp_path / "victim").write_text("x")
    os.symlink(tmp_path / "victim", tmp_path / MANIFEST)
    atomic_write_bytes(tmp_path / "a.json", b"{}")  # the write succeeds, the link target is untouched
    assert (tmp_path / "victim").read_text() == "x" and not written_by_pdgan(tmp_path / "a.json")
    fifo_dir = tmp_path / "f"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / MANIFEST)
    done = []
    worker = threading.Thread(target=lambda: done.append((atomic_write_bytes(fifo_dir / "b", b"1"),
                                                          written_by_pdgan(fifo_dir / "b"))), daemon=True)
    worker.start()
    worker.join(30)
    assert done == [(None, False)], "blocked on a FIFO manifest"


def test_manifest_is_compacted_and_tolerates_damage(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_MANIFEST_BYTES", 2000)
    for i in range(100):
        atomic_write_bytes(tmp_path / f"{i % 3}.txt", str(i).encode())
    (tmp_path / "0.txt").unlink()
    atomic_write_bytes(tmp_path / "1.txt", b"again")
    assert os.path.getsize(tmp_path / MANIFEST) <= 2000 + 100
    assert written_by_pdgan(tmp_path / "1.txt") and written_by_pdgan(tmp_path / "2.txt")
    with open(tmp_path / MANIFEST, "ab") as f:  # a killed append, a foreign line
        f.write(b'{"name": "2.txt", "size": "x"}\n{"na')
    assert written_by_pdgan(tmp_path / "2.txt")
    (tmp_path / "late.txt").write_text("appended by a log writer")
    record_written(tmp_path / "late.txt")
    assert written_by_pdgan(tmp_path / "late.txt")


def test_folder_output_that_cannot_be_written_or_dangles_is_refused_before_the_work(tmp_path, monkeypatch):
    """An existing folder without write permission failed only after the model loaded, naming a temporary; a
    dangling symlink as the folder gave '[Errno 17] File exists'."""
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if os.fspath(p) == os.fspath(out)
                        else real_access(p, mode, **k))  # as an unprivileged user sees a 0o555 folder (root does not)
    for overwrite in (None, False, True):
        refused(r"--outdir .*out: no permission to write in it", {"--outdir": out}, folders={"--outdir"},
                overwrite=overwrite)
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    refused(r"--outdir .*dangling is a symlink \(to .*gone\)", {"--outdir": tmp_path / "dangling"},
            folders={"--outdir"}, overwrite=None)


# --- whole-folder markers ---------------------------------------------------------------------------------
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
