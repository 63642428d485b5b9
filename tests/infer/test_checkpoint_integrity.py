"""Checkpoints from a hostile or damaged disk: every bad header is refused in one line before anything is built, in
bounded time; the weights carry their own digest, so a flipped byte is caught without the sidecar and a sidecar left
behind by a killed save cannot make them unloadable; a save interrupted at any step leaves a loadable checkpoint;
temporaries of killed writers are swept; files get the umask's mode.

Bad headers are forged two ways, as an attacker would: in the weights' own metadata with a correct
digest (`forge`), and, for checkpoints written before the digest, in the NAME.json sidecar."""
# regression: reliability review, sections 1 and 6; defects 3, 6, 8, 15, 16, 19, 20, 21
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import pdgan_infer.checkpoint as ck
from pdgan_infer import PDGAN, CheckpointError, PDGANError, load_checkpoint, read_header, save_checkpoint
from pdgan_infer.config import PRESETS, PDGANConfig
from pdgan_infer.schedule import Schedule, _vp_alphas_cumprod, pdgan_betas

BUNDLED = Path(ck.__file__).parent / "pretrained" / "digits.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    m = PDGAN("digits")
    return m, save_checkpoint(m, tmp_path_factory.mktemp("ck") / "model", meta={"step": 1})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small checkpoint (a few hundred kB) of a config that is no preset's, for the many forgeries."""
    cfg = PRESETS["digits"]
    cfg = cfg.replace(generator=dataclasses.replace(cfg.generator, nf=16, ch_mult=(1, 2), attn_resolutions=(), nz=16,
                                                    z_emb_dim=32, n_mlp=1),
                      encoder=dataclasses.replace(cfg.encoder, nf=16, ch_mult=(1, 2)),
                      latent=dataclasses.replace(cfg.latent, hidden=32, num_layers=2, ddim_steps=3))
    torch.manual_seed(0)
    return save_checkpoint(PDGAN(cfg), tmp_path_factory.mktemp("tiny") / "model")


def forge(src: Path, dst: Path, edit=None, *, digest: bool = True, sidecar: bool = True, tensors=None) -> Path:
    """A checkpoint at `dst` with `src`'s tensors (or `tensors`) and `src`'s header changed by
    `edit(header)`: in the weights' metadata, signed with a correct content digest (`digest`), or,
    like a checkpoint written before the digest, unsigned with the sidecar as the header."""
    tensors = load_file(str(src)) if tensors is None else tensors
    with safe_open(str(src), "pt") as f:
        header = json.loads(f.metadata()["pdgan"])
    if edit is not None:
        header = edit(header) or header
    text = json.dumps(header, sort_keys=True)
    meta = {"format": "pt", "pdgan": text}
    if digest:
        meta[ck.DIGEST_KEY] = ck.content_sha256(text, tensors)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst), metadata=meta)
    if sidecar:
        extra = {"content_sha256": meta[ck.DIGEST_KEY]} if digest else {}
        side = {**header, "sha256": ck.sha256_file(dst), **extra} if isinstance(header, dict) else header
        dst.with_suffix(".json").write_text(json.dumps(side))
    else:
        dst.with_suffix(".json").unlink(missing_ok=True)
    return dst


def refused(path, match, **kw) -> str:
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path, **kw)
    assert "\n" not in str(e.value), str(e.value)
    assert time.perf_counter() - t0 < 60  # seconds on a busy 2-core machine; the old code took hours or GBs
    return str(e.value)


@contextlib.contextmanager
def within(seconds: int, what: str):
    """Fail instead of hanging (the old code blocked forever or for hours here)."""
    def expired(*_):
        pytest.fail(f"{what} took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(h):
        d = h
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


# (id, edit of the header, expected message): the review's fixtures plus the hangs and allocations.
BAD_HEADERS = [
    ("config_list", _set("config", [1, 2]), "config must be a mapping"),
    ("config_str", _set("config", "digits"), "config must be a mapping"),
    ("nf_float", _set("config", "generator", "nf", 32.5), r"config.generator.nf must be an integer in \[1, 1024\], "
                                                          r"got 32.5 \(float\)"),
    ("nf_str", _set("config", "generator", "nf", "32"), "config.generator.nf must be an integer"),
    ("nf_4096", _set("config", "generator", "nf", 4096), "config.generator.nf must be an integer in"),
    ("latent_layers_1e5", _set("config", "latent", "num_layers", 100_000), "config.latent.num_layers"),
    ("train_steps_1e12", _set("config", "latent", "train_steps", 10**12), "config.latent.train_steps"),
    ("snr_tiny", _set("config", "schedule", "snr_threshold", 1e-300), "config.schedule.snr_threshold"),
    ("snr_below_end", _set("config", "schedule", "snr_threshold", 1e-5), "no T_hat exists"),
    ("snr_huge", _set("config", "schedule", "snr_threshold", 1e6), "need T_hat ~"),
    ("T0", _set("config", "schedule", "T", 0), r"config.schedule.T must be an integer in \[1, 1000\]"),
    ("T_1e6", _set("config", "schedule", "T", 10**6), "config.schedule.T must be"),
    ("T_bool", _set("config", "schedule", "T", True), "config.schedule.T must be"),
    ("nz_neg", _set("config", "generator", "nz", -5), "config.generator.nz"),
    ("res_str", _set("config", "resolution", "32"), "config.resolution"),
    ("res_odd", _set("config", "resolution", 31), "not divisible"),
    ("channels_2", _set("config", "channels", 2), "config.channels"),
    ("beta_nan", _set("config", "schedule", "beta_max", float("nan")), "config.schedule.beta_max"),
    ("beta_order", _set("config", "schedule", "beta_min", 30.0), "beta_min"),
    ("ch_mult_dict", _set("config", "generator", "ch_mult", {"a": 1}), "config.generator.ch_mult"),
    ("ch_mult_long", _set("config", "generator", "ch_mult", [1] * 100), "config.generator.ch_mult"),
    ("fir_zero", _set("config", "generator", "fir_kernel", [0, 0, 0, 0]), "positive sum"),
    ("dropout_str", _set("config", "generator", "dropout", "0"), "config.generator.dropout"),
    ("tanh_int", _set("config", "generator", "use_tanh", 1), "config.generator.use_tanh"),
    ("pool", _set("config", "encoder", "pool", "max"), "config.encoder.pool"),
    ("kind", _set("config", "schedule", "kind", "evil"), "config.schedule.kind"),
    ("ddim_gt_train", _set("config", "latent", "ddim_steps", 5000), "ddim_steps"),
    ("preset_list", _set("config", "preset", ["digits"]), r"unknown preset \['digits'\]"),
    ("preset_unknown", _set("config", "preset", "imagenet"), "unknown preset 'imagenet'"),
    ("preset_relabel", _set("config", "preset", "cifar10"), "config is preset 'digits''s exactly"),
    ("gen_list", _set("config", "generator", [1]), "config section 'generator' must be a mapping"),
    ("extra_cfg", _set("config", "extra_cfg", 1), r"unknown config keys \['extra_cfg'\]"),
    ("extra_gen", _set("config", "generator", "extra_gen", 1), r"unknown keys \['extra_gen'\]"),
    ("format_version_99", _set("config", "format_version", 99), "format_version 99"),
    ("extra_top", _set("extra_top", 1), r"unknown header keys \['extra_top'\]"),
    ("meta_str", _set("meta", "x"), "meta must be a mapping"),
    ("meta_deep", _set("meta", json.loads("[" * 40 + "]" * 40)), "nested more than"),
    ("components_str", _set("components", "generator"), "components must be"),
    ("components_evil", _set("components", ["generator", "encoder", "os.system"]), "components must be"),
    ("slot_list", _set("latent_slot", ["first"]), "latent_slot"),
    ("format", _set("format", "other"), "not a pdgan checkpoint config"),
]


@pytest.mark.parametrize("case,edit,match", BAD_HEADERS, ids=[c[0] for c in BAD_HEADERS])
def test_bad_header_is_refused_in_one_line(saved, tiny, tmp_path, monkeypatch, case, edit, match):
    """Before: AttributeError/TypeError/RecursionError/RuntimeError tracebacks, gigabytes allocated
    (nf=4096, num_layers=1e5, train_steps=1e12), hours of T_hat search (snr_threshold=1e-300), and a
    relabelled preset, format_version 99 or an extra key accepted. No model is built for any of them."""
    src = saved[1] if case == "preset_relabel" else tiny
    monkeypatch.setattr(PDGAN, "__init__", lambda *a, **k: pytest.fail("a model was built from a bad header"))
    with within(60, f"loading the {case} checkpoint"):
        refused(forge(src, tmp_path / "signed.safetensors", edit), match)  # in the weights, signed
        refused(forge(src, tmp_path / "old" / "model.safetensors", edit, digest=False), match)  # in an old sidecar
        with pytest.raises(CheckpointError, match=match):
            read_header(tmp_path / "signed.safetensors")


def test_deep_json_and_odd_sidecars(saved, tmp_path):
    _, src = saved
    old = forge(src, tmp_path / "model.safetensors", digest=False)
    side = old.with_suffix(".json")
    for text, match in (("[" * 200_000 + "]" * 200_000, "nested too deeply"), ("[1, 2]", "not a pdgan checkpoint"),
                        ("null", "not a pdgan checkpoint"), ("{not json", "not valid JSON")):
        side.write_text(text)
        refused(old, match)
    side.write_bytes(b"\xff\xfe binary")
    refused(old, "not valid JSON")
    side.unlink()
    side.mkdir()  # the sidecar path is a folder: IsADirectoryError before
    refused(old, "is a folder, not a file")


def test_shapes_are_compared_before_anything_is_built(tiny, tmp_path, monkeypatch):
    """A config that disagrees with the file fails on the meta-device shapes; before, the model was
    built (and allocated) first. nf=32 against nf=16 weights, a latent the file lacks, an extra tensor."""
    src = tiny
    monkeypatch.setattr(PDGAN, "__init__", lambda *a, **k: pytest.fail("a model was built before the shape check"))
    refused(forge(src, tmp_path / "a.safetensors", _set("config", "generator", "nf", 32)),
            r"shape mismatch for generator\.\S+: file \(16,?.*\) vs model \(32")
    refused(forge(src, tmp_path / "b.safetensors", _set("config", "latent", "hidden", 64)), "shape mismatch for latent")
    refused(forge(src, tmp_path / "c.safetensors", _set("components", ["generator", "encoder"])),
            r"\d+ unexpected tensors, e.g. \['latent\.")
    tensors = load_file(str(src))
    refused(forge(src, tmp_path / "d.safetensors", tensors={**tensors, "generator.evil": torch.zeros(3)}),
            r"unexpected tensors, e.g. \['generator.evil'\]")
    tensors.pop("generator.conv_in.weight")
    refused(forge(src, tmp_path / "e.safetensors", tensors=tensors), "lacks 1 tensors")
    tensors = load_file(str(src))
    tensors["encoder.code_norm.num_batches_tracked"] = torch.zeros((), dtype=torch.float32)
    refused(forge(src, tmp_path / "f.safetensors", tensors=tensors), "is F32 in the file")


def test_wrong_preset_argument(saved):
    _, path = saved
    refused(path, "is for preset 'digits', not 'cifar10'", preset="cifar10")


def test_fifo_folder_loop_and_dangling_link_are_refused_without_opening(saved, tmp_path):
    """A FIFO named x.safetensors blocked every loader forever; a symlink loop read as 'not found'."""
    _, src = saved
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with within(20, "opening a FIFO"):
        refused(fifo, "not a regular file")
        with pytest.raises(CheckpointError, match="not a regular file"):
            read_header(fifo)
        good = forge(src, tmp_path / "side" / "model.safetensors", digest=False)
        good.with_suffix(".json").unlink()
        os.mkfifo(good.with_suffix(".json"))  # an old checkpoint whose sidecar is a FIFO
        refused(good, "not a regular file")
    (tmp_path / "a.safetensors").symlink_to(tmp_path / "b.safetensors")
    (tmp_path / "b.safetensors").symlink_to(tmp_path / "a.safetensors")
    refused(tmp_path / "a.safetensors", "symlink loop")
    (tmp_path / "dangling.safetensors").symlink_to(tmp_path / "nothing.safetensors")
    refused(tmp_path / "dangling.safetensors", "dangling symlink")
    refused(tmp_path / "nothing.safetensors", "checkpoint not found")


def test_unreadable_files_are_a_checkpoint_error(saved, tmp_path, monkeypatch):
    """PermissionError (any OSError) while reading the weights or the sidecar was a traceback."""
    _, src = saved
    path = forge(src, tmp_path / "model.safetensors", digest=False)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(ck, "sha256_file", denied)
    refused(path, r"cannot be loaded \(PermissionError: \[Errno 13\] Permission denied")
    monkeypatch.undo()
    monkeypatch.setattr(ck, "load_file", denied)
    refused(path, r"cannot read checkpoint .* \(Permission denied\)")


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_unreadable_weights_are_named_as_unreadable(saved, tmp_path):
    """Review re-run (ck.*.noperm): weights without read permission were reported as "truncated or corrupt
    (No such file or directory)". Run in a subprocess; as root, with the capabilities that bypass file
    modes dropped (as the review did)."""
    _, src = saved
    path = tmp_path / "noperm.safetensors"
    shutil.copy(src, path)
    shutil.copy(src.with_suffix(".json"), path.with_suffix(".json"))
    path.chmod(0)
    cmd = [sys.executable, "-c", "import sys\nfrom pdgan_infer import load_checkpoint, CheckpointError\n"
           "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError as e:\n    print(e)", str(path)]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: file modes do not apply")
        cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f"cannot read checkpoint {path} (Permission denied)", out.stdout + out.stderr


# --- integrity -------------------------------------------------------------------------------------
def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor's bytes
    path.write_bytes(bytes(data))


def test_flipped_byte_is_caught_without_the_sidecar(saved, tmp_path):
    """Defect 19: with the sidecar's sha256 removed, or no sidecar, bit-flipped weights loaded."""
    _, src = saved
    path = tmp_path / "model.safetensors"
    path.write_bytes(src.read_bytes())
    side = json.loads(src.with_suffix(".json").read_text())
    side.pop("sha256")
    path.with_suffix(".json").write_text(json.dumps(side))
    _flip_last_byte(path)
    refused(path, "content digest does not match")
    path.with_suffix(".json").unlink()
    refused(path, "content digest does not match")
    forged = forge(src, tmp_path / "h.safetensors", sidecar=False)
    with safe_open(str(forged), "pt") as f:
        meta = f.metadata()
    meta["pdgan"] = json.dumps({**json.loads(meta["pdgan"]), "meta": {"step": 99}}, sort_keys=True)
    save_file(load_file(str(forged)), str(forged), metadata=meta)  # the header edited, the digest kept
    refused(forged, "content digest does not match")


def _old_format_copy(folder: Path, sidecar: str = "with-sha256") -> Path:
    """The bundled model as checkpoints were written before the embedded digest: safetensors metadata
    {"format": "pt", "pdgan": header} and a sidecar with the file's sha256 (or none / one without it)."""
    with safe_open(str(BUNDLED), framework="pt") as f:
        header = json.loads(f.metadata()["pdgan"])
    path = folder / "digits.safetensors"
    metadata = {"format": "pt", "pdgan": json.dumps(header, sort_keys=True)}  # no content digest
    save_file(load_file(str(BUNDLED)), str(path), metadata=metadata)
    if sidecar != "none":
        side = {**header, "sha256": ck.sha256_file(path)}
        if sidecar == "without-sha256":
            del side["sha256"]
        path.with_suffix(".json").write_text(json.dumps(side))
    return path


def test_bundled_checkpoint_carries_its_digest(tmp_path):
    """The shipped digits checkpoint is in the current format: a flipped byte is refused by the weights'
    own digest even without its sidecar (review re-run: tampered_nojson / tampered_sha_removed)."""
    with safe_open(str(BUNDLED), framework="pt") as f:
        assert ck._is_sha256(f.metadata().get(ck.DIGEST_KEY))
    assert load_checkpoint(BUNDLED).latent is not None
    path = tmp_path / "digits.safetensors"
    path.write_bytes(BUNDLED.read_bytes())  # no sidecar
    _flip_last_byte(path)
    refused(path, "content digest does not match")


def test_old_checkpoints_keep_their_checks(tmp_path):
    """A checkpoint without an embedded digest loads; its sidecar sha256 still guards it."""
    path = _old_format_copy(tmp_path)
    header = read_header(path)
    assert header["config"]["preset"] == "digits" and "sha256" in header
    assert load_checkpoint(path).latent is not None
    _flip_last_byte(path)
    refused(path, r"sha256 differs from digits.json")
    side = json.loads(path.with_suffix(".json").read_text())
    side = {**side, "sha256": ck.sha256_file(path), "content_sha256": "0" * 64}
    path.with_suffix(".json").write_text(json.dumps(side))
    refused(path, "content digest does not match")  # a digest named anywhere is checked


@pytest.mark.parametrize("sidecar", ["none", "without-sha256"])
def test_unverifiable_old_checkpoint_says_so(tmp_path, caplog, sidecar):
    """Review re-run (ck.*.tampered_nojson, tampered_sha_removed): an older checkpoint (no embedded digest)
    with no sidecar, or a sidecar without its sha256, loaded a flipped byte silently. Nothing can verify
    it, so loading says that in one warning; a verifiable checkpoint loads without it."""
    with caplog.at_level(logging.WARNING, logger="pdgan"):
        read_header(BUNDLED)
    assert not [r for r in caplog.records if "cannot be detected" in r.getMessage()]
    path = _old_format_copy(tmp_path, sidecar)
    _flip_last_byte(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pdgan"):
        read_header(path)
    msgs = [r.getMessage() for r in caplog.records if "cannot be detected" in r.getMessage()]
    assert len(msgs) == 1 and "\n" not in msgs[0] and "re-save it" in msgs[0], caplog.text


def test_stale_sidecar_cannot_make_the_weights_unloadable(saved, tmp_path, caplog):
    """Defect 3: kill -9 between the two renames left new weights beside the old sidecar: 'sha256
    differs', unloadable until the next save. The weights' own digest makes the old sidecar harmless."""
    m, _ = saved
    path = save_checkpoint(m, tmp_path / "model", meta={"step": 1})
    old_side = path.with_suffix(".json").read_text()
    m2 = PDGAN("digits")
    save_checkpoint(m2, tmp_path / "model", meta={"step": 2})
    path.with_suffix(".json").write_text(old_side)  # what a kill between the renames leaves
    with caplog.at_level("WARNING", logger="pdgan"):
        got = load_checkpoint(path)
    assert "does not describe model.safetensors" in caplog.text
    assert torch.equal(got.generator.conv_in.weight, m2.generator.conv_in.weight)
    assert got.checkpoint_meta == {"step": 2} and "sha256" not in read_header(path)
    path.with_suffix(".json").write_text("{garbage")  # even a damaged sidecar only warns
    assert read_header(path)["meta"] == {"step": 2}


class _Killed(BaseException):
    """Stands for SIGKILL at one step of a save (BaseException: nothing catches it on the way)."""


def _fail_at(k: int):
    """A wrapper factory: the k-th call (from 0) through any wrapped function raises _Killed."""
    calls = [0]

    def failing(real):
        def step(*a, **kw):
            calls[0] += 1
            if calls[0] == k + 1:
                raise _Killed
            return real(*a, **kw)
        return step
    return failing


def test_a_save_interrupted_at_every_step_leaves_a_loadable_checkpoint(tiny, tmp_path, monkeypatch):
    """Issue 16, Build 3: each I/O step of save_checkpoint fails in turn (writing the weights, hashing
    them, fsync, chmod, each rename); afterwards the checkpoint loads and holds the old or the new
    weights, never an error. Over a checkpoint written before the digest, and over a current one."""
    steps = [(ck, "save_file"), (ck, "sha256_file"), (os, "fsync"), (os, "chmod"), (os, "replace")]
    new = load_checkpoint(tiny)
    with torch.no_grad():
        new.generator.conv_in.weight.add_(1.0)
    new_w = new.generator.conv_in.weight
    old_format = forge(tiny, tmp_path / "ref-old" / "model.safetensors", digest=False)
    for start, source in (("old-format", old_format), ("new-format", tiny)):
        old_w = load_checkpoint(source).generator.conv_in.weight
        outcomes = []
        for k in range(20):  # fail the k-th step; the last k lets the save finish
            folder = tmp_path / start / str(k)
            folder.mkdir(parents=True)
            for suffix in (".safetensors", ".json"):
                (folder / f"model{suffix}").write_bytes(source.with_suffix(suffix).read_bytes())
            failing = _fail_at(k)
            with monkeypatch.context() as mp:
                for mod, name in steps:
                    mp.setattr(mod, name, failing(getattr(mod, name)))
                try:
                    save_checkpoint(new, folder / "model")
                    done = True
                except _Killed:
                    done = False
            w = load_checkpoint(folder).generator.conv_in.weight
            assert torch.equal(w, old_w) or torch.equal(w, new_w), (start, k)
            outcomes.append("new" if torch.equal(w, new_w) else "old")
            assert not list(folder.glob(".*.tmp"))
            if done:
                break
        # weights: write, hash, fsync, chmod, rename; sidecar: fsync, chmod, rename; then no failure
        assert outcomes == ["old"] * 5 + ["new"] * 4, (start, outcomes)


def test_stale_temporaries_are_swept_and_files_follow_the_umask(saved, tmp_path):
    """Defects 16 and 20: killed writers' .NAME.*.tmp files accumulated; artefacts were 0600/0644
    whatever the umask."""
    m, _ = saved
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".model.safetensors.{dead.pid}-abc12345.tmp", tmp_path / ".model.json.oldstyle1.tmp"]
    live = tmp_path / f".model.safetensors.{os.getppid()}-zzz.tmp"  # a live writer (our parent): kept
    for p in [*stale, live]:
        p.write_bytes(b"partial")
    old = time.time() - 2 * ck.STALE_TMP_S
    os.utime(stale[1], (old, old))
    fresh = tmp_path / ".model.json.fresh123.tmp"  # pid-less but recent: kept (a writer may own it)
    fresh.write_bytes(b"x")
    mask = os.umask(0o002)
    try:
        path = save_checkpoint(m, tmp_path / "model")
    finally:
        os.umask(mask)
    assert not any(p.exists() for p in stale) and live.exists() and fresh.exists()
    for p in (path, path.with_suffix(".json")):
        assert p.stat().st_mode & 0o777 == 0o664, oct(p.stat().st_mode)
    mask = os.umask(0o077)
    try:
        ck.atomic_write_bytes(tmp_path / "private.bin", b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "private.bin").stat().st_mode & 0o777 == 0o600


def test_atomic_path_refuses_a_folder_before_the_work(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(ck.OutputPathError, match="it is a folder") as e:
        with ck.atomic_path(tmp_path / "out.png"):
            pytest.fail("the work ran although the target is a folder")
    assert isinstance(e.value, PDGANError) and isinstance(e.value, OSError)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ck.OutputPathError, match="a file is in the way"):
        ck.atomic_write_bytes(tmp_path / "afile" / "x.bin", b"")


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_names_the_file(tmp_path):
    """Review re-run (edit.disk.8kb, export.disk.1mb): a write that hits a full disk or a file-size
    limit said only "[Errno 27] File too large"; it names the output, and leaves no temporary. The limit
    is real (RLIMIT_FSIZE in a subprocess: CPython ignores SIGXFSZ, so the write gets EFBIG)."""
    code = ("import resource, sys\nfrom pdgan_infer.checkpoint import atomic_write_bytes, OutputPathError\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "try:\n    atomic_write_bytes(sys.argv[1], bytes(100_000))\n"
            "except OutputPathError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.bin")], check=False,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == f"cannot write {tmp_path / 'big.bin'} (File too large); free space or choose " \
                                 "another output", out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []
    # other errors of the writer pass through unchanged
    with pytest.raises(ValueError, match="not a write failure"):
        with ck.atomic_path(tmp_path / "x.bin"):
            raise ValueError("not a write failure")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_what_it_could_not_load(tmp_path):
    cfg = PRESETS["digits"]
    bad = cfg.replace(generator=dataclasses.replace(cfg.generator, nz=5000))
    with pytest.raises(CheckpointError, match="cannot save .* config.generator.nz"):
        model = type("M", (), {"components": ["generator", "encoder"], "config": bad, "latent_slot": "first",
                               "generator": torch.nn.Identity(), "encoder": torch.nn.Identity()})()
        ck.write_checkpoint(model, tmp_path / "m.safetensors", tmp_path / "m.json")
    assert not list(tmp_path.iterdir())


# --- the schedule's bounded search ------------------------------------------------------------------
def _t_hat_loop(abar, threshold):
    """The original Python loop of schedule._t_hat (the reference for the vectorised one)."""
    snr = abar / (1.0 - abar)
    for t in range(1, len(abar) - 1):
        if snr[t] > threshold and snr[t + 1] < threshold:
            return t
    return None


def test_t_hat_search_unchanged_and_bounded():
    """The T_hat search gives the same T_hat as the original loop, and fails fast (same ValueError)
    where it used to run for hours: snr_threshold=1e-300 was about 8.6 h of O(T_hat^2) Python."""
    from pdgan_infer import schedule as S
    for T_hat in (3, 6, 37, 200):
        for bmin, bmax in ((0.1, 20.0), (0.0, 5.0), (1.0, 1.0)):
            abar = _vp_alphas_cumprod(T_hat, bmin, bmax)
            for thr in (1e-5, 0.05, 0.1, 1.0, 1e3):
                assert S._t_hat(abar, thr) == _t_hat_loop(abar, thr)
    assert [pdgan_betas(T)[1] for T in (1, 2, 3, 4, 8)] == [4, 6, 8, 10, 18]  # Appendix A, default rule
    for args in ((2, 0.1, 20.0, 1e-300), (10**6, 0.1, 20.0, 0.1), (1, 0.1, 20.0, 4e-5)):
        with within(10, f"pdgan_betas{args}"), pytest.raises(ValueError, match="no T_hat gives t_hat"):
            pdgan_betas(*args)
    t0 = time.perf_counter()
    assert Schedule.pdgan(100).T_hat == pdgan_betas(100)[1]
    assert time.perf_counter() - t0 < 5.0


def test_config_limits_cover_every_field():
    """Every field of every config dataclass has a limit (a new field without one would go unchecked)."""
    import dataclasses

    from pdgan_infer import config as C
    for cls in (C.PDGANConfig, C.GeneratorConfig, C.EncoderConfig, C.LatentConfig, C.ScheduleConfig):
        names = {f.name for f in dataclasses.fields(cls)} - {"generator", "encoder", "latent", "schedule"}
        assert names == set(C.LIMITS[cls]), cls
    for name, preset in PRESETS.items():  # the presets are inside the limits
        assert PDGANConfig.from_dict(json.loads(preset.to_json())) == preset, name
