"""Re-run the reliability review on the current code: "Review: bad input and faults", written at commit b2484bc
(not part of the repository; pass its Markdown with --review FILE or $PDGAN_REVIEW).

Every case of the review whose recorded outcome was not clean (a traceback, a hang, bad input accepted
with exit 0, data lost or corrupted), plus controls, is rebuilt in a scratch folder and run again through
the same entry points: the installed CLIs (pdgan-export/-eval/-edit/-bench/-train) and the Engine API in
a subprocess, one case at a time, each under a timeout (a timeout is a hang). The review's tables are
parsed for each case's recorded outcome ("then") and, where a row is a plain command, for the command.

Classification of the outcome now:
  clean      exit 1/2 (or a documented exception from the API: PDGANError, ValueError, TypeError), no
             "Traceback" on stderr; or, for a control / a case that must work, exit 0 with the expected result
  traceback  "Traceback" on stderr, or an undocumented exception type from the API
  hang       killed by the per-case timeout
  accepted   bad input ended with exit 0 / returned a result
  warned     an older checkpoint that carries no digest loaded with a warning that it cannot be verified
  data-lost  a victim file changed (sha256), a checkpoint no longer loads, or a run wrote where it must not
  crash      killed by a signal we did not send

Not reproducible here (listed with the reason in the results): the review's small tmpfs mounts; a
per-process file-size limit (RLIMIT_FSIZE, EFBIG "File too large" instead of ENOSPC) stands in for a full
disk. The process runs as root, so "mode 000" and "read-only directory" cases run under
`setpriv --inh-caps=-all --bounding-set=-dac_override,-dac_read_search` (capabilities dropped as the
review did with capsh). The kill -9 rows are the slow fault-injection test (tests/train/test_train_faults.py).

    nice -n 10 .venv/bin/python benchmarks/reliability_rerun.py --review REVIEW.md  # every case (about an
                                                                                    # hour on a loaded 2-core CPU)
    ... --only ck.                                                           # a subset (id prefix or regex)
    ... --rerun-failed benchmarks/results/2026-11-30-xeon-amx-reliability-rerun.json  # only the cases not clean there
Writes benchmarks/results/DATE-MACHINE-reliability-rerun.json and .md (case, then, now, message); MACHINE is
$PDGAN_MACHINE (benchmarks/results_index.py), else unnamed-machine.
--render JSON writes the .json/.md again from a result and needs no review.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVIEW_TITLE = "the reliability review written at commit b2484bc (not part of the repository)"
MACHINE = os.environ.get("PDGAN_MACHINE", "unnamed-machine")  # benchmarks/results_index.py
BIN = Path(sys.executable).parent
PY = sys.executable
BUNDLED = ROOT / "pdgan_infer" / "pretrained" / "digits.safetensors"
DROP_DAC = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]
T_CLI = 240  # seconds per command (a loaded 2-core CPU: imports alone take 10-20 s)
T_TRAIN = 600

# --- the review's tables ----------------------------------------------------------------------------------


def parse_review(path: Path) -> list[dict]:
    rows, sec = [], None
    for line in path.read_text().splitlines():
        m = re.match(r"## (\d)\. ", line)
        if m:
            sec = int(m.group(1))
            continue
        if line.startswith("## Defects"):
            sec = None
        if sec and line.startswith("| ") and not line.startswith("| case"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) == 6:
                case, cmd, rc, tb, msg, lost = cells
                rows.append({"section": sec, "case": case, "command": cmd.strip("`"), "rc": rc, "traceback": tb,
                             "message": msg, "lost": lost})
    return rows


ACCEPTED_THEN = {  # rows the review counts as "bad input accepted" (exit 0) without marking data loss
    "train.nan.r1_nan", "cli.train.max-steps=1e12", "cli.train.lr-g=inf", "cli.train.lr-d=nan",
    "cli.train.r1-gamma=-1", "cli.train.num-workers=1e6", "cli.export.opt-batch=1e12(onnx)",
    "cli.bench.backends=foo", "cli.bench.dtype=float16(cpu)", "cli.bench.threads=1e6", "cli.edit.scale=1e308",
    "api.ctor.typo_kwarg", "api.encode.00", "cli.train.seed=-1(run)", "cli.train.latent-steps=-1(run)",
    "cli.eval.seed=-1", "cli.eval.seed=2**63", "api.gen.n=10**12.seedNone",
}
CK_ACCEPTED_THEN = {"json_preset_relabel", "json_format_version99"}


def then_outcome(row: dict, loader_index: int | None = None) -> str:
    rc, tb, lost = row["rc"], row["traceback"], row["lost"]
    if loader_index is not None:
        rcs = rc.split("/")
        rc = rcs[loader_index] if loader_index < len(rcs) else rc
        name = LOADERS[loader_index]
        tb = "yes" if name in tb.replace(" ", "").split(",") else "no"
    if "timeout" in rc:
        return "hang"
    if lost != "no" and not lost.startswith("no "):
        return "data-lost"
    if tb != "no" or rc in ("UNCLEAN", "MemoryError") or rc.startswith("4("):
        return "traceback"
    if rc in ("ACCEPTED", "WRONG IMAGES"):
        return "accepted"
    if rc == "–":
        return "not run"
    return rc


# --- running one command ----------------------------------------------------------------------------------


def sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def tree_sha(folder: Path) -> dict[str, str | None]:
    """sha256 of every file below `folder` (a run's .lock, which holds the pid of its last user, excepted)."""
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"} if folder.exists() else {}


def _limits(fsize: int | None):
    def pre():
        os.setsid()
        # a background job inherits SIGINT ignored (and Python then never raises KeyboardInterrupt)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return pre


def run(cmd: list[str], cwd: Path, timeout: float = T_CLI, fsize: int | None = None, env: dict | None = None) -> dict:
    """Run `cmd` in its own process group (killed at `timeout`: a hang), files limited to `fsize` bytes."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "PDGAN_CACHE": str(cwd / "cache"), **(env or {})}
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors="replace", preexec_fn=_limits(fsize))  # noqa: PLW1509 - no threads here
    out, err, rc = _finish(p, timeout)
    return {"rc": rc, "stdout": out, "stderr": err, "s": round(time.monotonic() - t0, 1), "sent": []}


def _finish(p: subprocess.Popen, timeout: float) -> tuple[str, str, int | str]:
    """(stdout, stderr, exit status) of `p`, its process group killed and "timeout" after `timeout` s."""
    try:
        out, err = p.communicate(timeout=timeout)
        return out, err, p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return out, err, "timeout"


def message(r: dict) -> str:
    lines = [x for x in (r["stderr"] or "").splitlines() if x.strip()]
    if "Traceback" in (r["stderr"] or ""):
        return lines[-1][:300] if lines else ""
    err = [x for x in lines if "error" in x.lower() or "Error" in x]
    if err:
        return err[-1][:300]
    if lines:
        return lines[-1][:300]
    outl = [x for x in (r["stdout"] or "").splitlines() if x.strip()]
    return outl[-1][:300] if outl else ""


def classify(r: dict, must_work: bool = False) -> str:
    if r["rc"] == "timeout":
        return "hang"
    if "Traceback" in (r["stderr"] or ""):
        return "traceback"
    if isinstance(r["rc"], int) and r["rc"] < 0 and -r["rc"] not in r.get("sent", []):
        return "crash"
    if r["rc"] == 0:
        return "clean" if must_work else "accepted"
    return "clean" if must_work is False else "failed"


# --- checkpoint fixtures (section 1) ----------------------------------------------------------------------

LOADERS = ["api", "export", "eval", "edit", "bench"]
API_LOAD = ("import sys\nfrom pdgan_infer import Engine, PDGANError\n"
            "try:\n    imgs = Engine.from_checkpoint(sys.argv[1], backend='torch').generate(2, seed=0)\n"
            "except PDGANError as e:\n    print(f'{type(e).__name__}: {e}', file=sys.stderr); sys.exit(3)\n"
            "print('LOADED OK', imgs.shape, imgs.mean())\n")


def loader_cmd(loader: str, fx: str) -> list[str]:
    stem = Path(fx).name.replace(".safetensors", "")
    return {
        "api": [PY, "-c", API_LOAD, fx],
        "export": [str(BIN / "pdgan-export"), fx, "--out", f"out/{stem}.onnx", "--no-verify"],
        "eval": [str(BIN / "pdgan-eval"), fx, "--data", "digits", "--n", "4", "--metrics", "interp",
                 "--interp-pairs", "1", "--interp-steps", "3", "--quiet"],
        "edit": [str(BIN / "pdgan-edit"), fx, "reconstruct", "--data", "digits", "--n", "2", "--out",
                 f"out/{stem}_edit.png"],
        "bench": [str(BIN / "pdgan-bench"), "--checkpoint", fx, "--backends", "torch", "--n", "2", "--repeats",
                  "1", "--device", "cpu"],
    }[loader]


def _split(path: Path) -> tuple[bytes, dict, bytes]:
    b = path.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    return b[:8], json.loads(b[8:8 + n]), b[8 + n:]


def _json_fixture(fx: Path, name: str, edit) -> str:
    w = fx / f"{name}.safetensors"
    shutil.copy(fx / "good.safetensors", w)
    side = json.loads((fx / "good.json").read_text())
    res = edit(side)
    (fx / f"{name}.json").write_text(res if isinstance(res, str) else json.dumps(side))
    return f"fx/{name}.safetensors"


def _set(path: str, value):
    def edit(side):
        d = side
        keys = path.split(".")
        for k in keys[:-1]:
            d = d[k]
        if value is _DEL:
            d.pop(keys[-1])
        else:
            d[keys[-1]] = value
    return edit


_DEL = object()


def build_ck_fixtures(work: Path) -> dict[str, tuple[str, bool]]:
    """name -> (path relative to work, must load?). `good` is a copy of the bundled digits checkpoint (an
    older checkpoint: no content digest in its header, so the sidecar is what is read); `*_v2` variants
    are a copy re-saved by the current save_checkpoint (content digest embedded)."""
    fx = work / "fx"
    fx.mkdir()
    shutil.copy(BUNDLED, fx / "good.safetensors")
    shutil.copy(BUNDLED.with_suffix(".json"), fx / "good.json")
    subprocess.run([PY, "-c", "import sys\nfrom pdgan_infer import load_checkpoint, save_checkpoint\n"
                    "m = load_checkpoint(sys.argv[1]); save_checkpoint(m, sys.argv[2], meta=m.checkpoint_meta)",
                    str(fx / "good.safetensors"), str(fx / "good_v2.safetensors")], check=True)
    out = {"good": ("fx/good.safetensors", True), "good_v2": ("fx/good_v2.safetensors", True)}
    J = {
        "json_T0": _set("config.schedule.T", 0),
        "json_T_1e6": _set("config.schedule.T", 10**6),
        "json_config_list": _set("config", [1, 2]),
        "json_config_str": _set("config", "digits"),
        "json_deep": lambda s: json.dumps({**s, "meta": None})[:-1] + ', "x": ' + "[" * 200000 + "]" * 200000 + "}",
        "json_extra_cfg": _set("config.extra_cfg", 1),
        "json_extra_gen": _set("config.generator.extra_gen", 1),
        "json_gen_list": _set("config.generator", [32]),
        "json_nf_float": _set("config.generator.nf", 32.5),
        "json_nf_str": _set("config.generator.nf", "32"),
        "json_nz_neg": _set("config.generator.nz", -5),
        "json_preset_list": _set("config.preset", ["digits"]),
        "json_res_str": _set("config.resolution", "32"),
        "json_sched_kind": _set("config.schedule.kind", "evil"),
        "json_train_steps_1e12": _set("config.latent.train_steps", 10**12),
        "json_snr_tiny": _set("config.schedule.snr_threshold", 1e-300),
        "json_nf_4096": _set("config.generator.nf", 4096),
        "json_latent_layers_1e5": _set("config.latent.num_layers", 100000),
        "json_preset_relabel": _set("config.preset", "cifar10"),
        "json_format_version99": _set("config.format_version", 99),
    }

    def meta_str(side):
        side["meta"] = "x"
        side.pop("latent_slot", None)
    J["json_meta_str_noslot"] = meta_str
    for name, edit in J.items():
        out[name] = (_json_fixture(fx, name, edit), False)
    # the sidecar path is a folder
    shutil.copy(fx / "good.safetensors", fx / "jsondir.safetensors")
    (fx / "jsondir.json").mkdir()
    out["jsondir"] = ("fx/jsondir.safetensors", False)
    # one weight byte flipped (in the last tensor's data), no sidecar / sidecar without sha256
    for base in ("good", "good_v2"):
        sfx = "" if base == "good" else "_v2"
        b = bytearray((fx / f"{base}.safetensors").read_bytes())
        b[-100] ^= 0x40
        (fx / f"tampered_nojson{sfx}.safetensors").write_bytes(b)
        out[f"tampered_nojson{sfx}"] = (f"fx/tampered_nojson{sfx}.safetensors", False)
        (fx / f"tampered_sha_removed{sfx}.safetensors").write_bytes(b)
        side = json.loads((fx / f"{base}.json").read_text())
        side.pop("sha256", None)
        (fx / f"tampered_sha_removed{sfx}.json").write_text(json.dumps(side))
        out[f"tampered_sha_removed{sfx}"] = (f"fx/tampered_sha_removed{sfx}.safetensors", False)
    # unreadable weights / sidecar (run with the DAC capabilities dropped)
    for name, which in (("noperm", "safetensors"), ("noperm_json", "json")):
        shutil.copy(fx / "good.safetensors", fx / f"{name}.safetensors")
        shutil.copy(fx / "good.json", fx / f"{name}.json")
        os.chmod(fx / f"{name}.{which}", 0)
        out[name] = (f"fx/{name}.safetensors", False)
    os.mkfifo(fx / "fifo.safetensors")
    out["fifo"] = ("fx/fifo.safetensors", False)
    return out


CK_FIXTURE_OF = {  # review case text -> fixture name
    "intact bundled digits checkpoint (control)": "good",
}


def ck_cases(rows, work, fixtures) -> list[dict]:
    cases = []
    by_fx = {}
    for row in rows:
        if row["section"] == 1:
            m = re.match(r"fx/(\S+?)(?:\.safetensors)? via", row["command"])
            if m:
                by_fx[m.group(1)] = row
    for name, (path, must) in fixtures.items():
        base = name[:-3] if name.endswith("_v2") else name
        row = by_fx.get(base)
        for i, loader in enumerate(LOADERS):
            then = then_outcome(row, i) if row else "new case"
            if row and base in CK_ACCEPTED_THEN and then == "0":
                then = "accepted"
            cases.append({"id": f"ck.{loader}.{name}", "then": then, "kind": "ck", "loader": loader, "fx": path,
                          "must_work": must, "review_case": row["case"] if row else f"{base} (current format)"})
    return cases


def run_ck(case, work) -> dict:
    cmd = loader_cmd(case["loader"], case["fx"])
    if case["fx"].split("/")[-1].startswith("noperm"):
        cmd = DROP_DAC + cmd
    before = tree_sha(work / "fx")
    r = run(cmd, work)
    now = classify(r, case["must_work"])
    if r["rc"] == 3 and case["loader"] == "api":
        now = "clean"
    if now == "accepted" and "cannot be detected" in r["stderr"]:
        now = "warned (unverifiable old checkpoint)"  # loaded, saying that nothing can verify it
    if tree_sha(work / "fx") != before:
        now = "data-lost"
    return {**r, "now": now}


# --- section 4: CLI arguments, parsed from the review ------------------------------------------------------

CLI_MUST_WORK = {"cli.export.out-newdir", "cli.bench.json-newdir", "cli.eval.json-newdir", "cli.edit.out-newdir"}
FSIZE_CASES = {"edit.disk.8kb": 8 << 10, "bench.disk.4kb": 4 << 10, "export.disk.1mb": 1 << 20}


def cli_cases(rows) -> list[dict]:
    cases = []
    for row in rows:
        cid = row["case"].split(":")[0]
        if row["section"] not in (4, 5) or not row["command"].startswith("pdgan-"):
            continue
        then = then_outcome(row)
        if then == "0" and cid in ACCEPTED_THEN:
            then = "accepted"
        if cid in CLI_MUST_WORK:
            then = "clean (control)"
        if then not in ("hang", "traceback", "data-lost", "accepted", "clean (control)"):
            if not (row["rc"] == "1" and cid in ACCEPTED_THEN):
                continue
            then = "accepted"
        cases.append({"id": cid, "then": then, "kind": "cli", "command": row["command"], "review_case": row["case"],
                      "must_work": cid in CLI_MUST_WORK})
    return cases


def setup_cli(work: Path):
    (work / "ck").mkdir()
    for ext in ("safetensors", "json"):
        shutil.copy(BUNDLED.with_suffix("." + ext), work / "ck" / f"digits.{ext}")
    (work / "victim").mkdir()
    for v in ("export_w", "export_j", "edit_w", "bench_j", "eval_j"):
        for ext in ("safetensors", "json"):
            shutil.copy(BUNDLED.with_suffix("." + ext), work / "victim" / f"{v}.{ext}")
    (work / "out" / "existing_dir").mkdir(parents=True, exist_ok=True)
    (work / "afile").write_text("a file\n")
    (work / "mnt_t").mkdir()


def run_cli(case, work) -> dict:
    import shlex
    argv = shlex.split(case["command"])
    argv[0] = str(BIN / argv[0])
    if argv[0].endswith("pdgan-train") and "--dry-run" not in argv:
        argv.append("--dry-run")  # validation is what these rows test; a real run would train for minutes
    fsize = FSIZE_CASES.get(case["id"])
    victims = {p: sha(work / p) for p in ("victim", "ck")
               for p in [str(q.relative_to(work)) for q in (work / p).iterdir()]}
    r = run(argv, work, fsize=fsize)
    now = classify(r, case["must_work"])
    changed = [p for p, h in victims.items() if sha(work / p) != h]
    if changed:
        now = "data-lost"
        r["stderr"] += f"\n[harness] changed: {changed}"
    # a result file silently missing after exit 0 is data lost
    if r["rc"] == 0 and fsize and "--json" in argv and not (work / argv[argv.index("--json") + 1]).is_file():
        now = "data-lost"
    return {**r, "now": now}


# --- section 3 and 5: Engine API in a subprocess ------------------------------------------------------------

API_PRELUDE = """
import sys, warnings, numpy as np, torch
from pdgan_infer import Engine, PDGANError
warnings.simplefilter('always')
ck = 'ck/digits.safetensors'
def case():
{body}
try:
    with warnings.catch_warnings(record=True) as w:
        r = case()
    if w:
        print('WARNED:', str(w[0].message).splitlines()[0], file=sys.stderr); sys.exit(5)
    print('RETURNED', type(r).__name__, getattr(r, 'shape', r)); sys.exit(0)
except (PDGANError, ValueError, TypeError) as e:
    print(f'{{type(e).__name__}}: {{e}}'.splitlines()[0], file=sys.stderr); sys.exit(3)
"""
API_CASES = {  # id -> (body, must work)
    "api.gen.n=2**32": ("e = Engine.from_checkpoint(ck, backend='torch'); return e.generate(2**32, seed=0)", False),
    "api.gen.n=2**31": ("e = Engine.from_checkpoint(ck, backend='torch'); return e.generate(2**31, seed=0)", False),
    "api.gen.n=10**7": ("e = Engine.from_checkpoint(ck, backend='torch'); return e.generate(10**7, seed=0)", False),
    "api.gen.n=2**32.seedNone": ("e = Engine.from_checkpoint(ck, backend='torch'); return e.generate(2**32)", False),
    "api.gen.n=10**12.seedNone": ("e = Engine.from_checkpoint(ck, backend='torch'); return e.generate(10**12)",
                                  False),
    "api.ctor.typo_kwarg": ("return Engine.from_checkpoint(ck, backend='torch', bach_size=4)", False),
    "api.encode.00": ("e = Engine.from_checkpoint(ck, backend='torch')\n"
                      "    x = torch.rand(4, 3, 32, 32)\n    return e.encode(x)", False),
    "api.genfrom.15": ("e = Engine.from_checkpoint(ck, backend='torch')\n"
                       "    return e.generate_from(torch.zeros(2, 32, device='meta'), seed=0)", False),
    "api.save_grid.dir": ("import os; os.makedirs('out/gdir', exist_ok=True)\n"
                          "    return Engine.save_grid(np.zeros((2, 32, 32, 3), np.uint8), 'out/gdir')", False),
    "api.iter.n=10**9 (control)": ("e = Engine.from_checkpoint(ck, backend='torch')\n"
                                   "    return next(e.iter_batches(10**9, seed=0, batch_size=2))", True),
    "cache.is_dir": ("import glob, os, shutil\n"
                     "    e = Engine.from_checkpoint(ck, backend='onnxruntime', export_cache_dir='cache_isdir')\n"
                     "    p = glob.glob('cache_isdir/**/*.onnx', recursive=True)[0]; os.remove(p); os.mkdir(p)\n"
                     "    return Engine.from_checkpoint(ck, backend='onnxruntime',\n"
                     "                                  export_cache_dir='cache_isdir')", False),
    "cache.dir_is_file": ("open('cache_file', 'w').write('x')\n"
                          "    return Engine.from_checkpoint(ck, backend='onnxruntime',\n"
                          "                                  export_cache_dir='cache_file/f')", False),
    "cache.forged_meta": (
        "import glob, os, shutil, onnx\n"
        "    from pdgan_infer import load_checkpoint\n"
        "    e = Engine.from_checkpoint(ck, backend='onnxruntime', export_cache_dir='cache_forged')\n"
        "    p = glob.glob('cache_forged/**/*.onnx', recursive=True)[0]\n"
        "    other = Engine.from_preset('digits', seed=5, backend='onnxruntime', export_cache_dir='cache_other')\n"
        "    q = glob.glob('cache_other/**/*.onnx', recursive=True)[0]\n"
        "    mo, mp = onnx.load(q), onnx.load(p)\n"
        "    want = {x.key: x.value for x in mp.metadata_props}\n"
        "    for x in mo.metadata_props:\n        x.value = want.get(x.key, x.value)\n"
        "    onnx.save(mo, p)\n"
        "    a = Engine.from_checkpoint(ck, backend='onnxruntime', export_cache_dir='cache_forged')\n"
        "    a = a.generate(2, seed=0)\n"
        "    b = Engine.from_checkpoint(ck, backend='torch').generate(2, seed=0)\n"
        "    d = int(np.abs(a.astype(int) - b.astype(int)).max())\n"
        "    if d > 4:\n        print(f'WRONG IMAGES: max diff {d}', file=sys.stderr); sys.exit(7)\n"
        "    return d", True),
}


def api_cases(rows) -> list[dict]:
    by_id = {r["case"].split(":")[0]: r for r in rows}
    out = []
    for cid, (body, must) in API_CASES.items():
        row = by_id.get(cid)
        then = then_outcome(row) if row else "control"
        if row and cid in ACCEPTED_THEN:
            then = "accepted" if then in ("clean", "OK", "ACCEPTED") else then
        if cid == "api.gen.n=10**12.seedNone":
            then = "wrong message (clean)"
        if cid == "cache.forged_meta":
            then = "data-lost"
        out.append({"id": cid, "then": then, "kind": "api", "body": body, "must_work": must,
                    "review_case": row["case"] if row else cid})
    return out


def run_api(case, work) -> dict:
    body = "\n".join("    " + x.strip() if i == 0 else x for i, x in enumerate(case["body"].split("\n")))
    r = run([PY, "-c", API_PRELUDE.format(body=body)], work)
    rc = r["rc"]
    if rc == "timeout":
        now = "hang"
    elif "Traceback" in r["stderr"]:
        now = "traceback"
    elif rc == 3:
        now = "clean"
    elif rc == 5:
        now = "clean (warned)"
    elif rc == 7:
        now = "data-lost"
    elif rc == 0:
        now = "clean" if case["must_work"] else "accepted"
    else:
        now = f"rc {rc}"
    if case["id"] == "api.gen.n=10**12.seedNone" and "Upper bound" in r["stderr"]:
        now = "wrong message"
    return {**r, "now": now}


# --- section 2: training --------------------------------------------------------------------------------------

TRAIN = ["--preset", "digits", "--batch-size", "8", "--latent-steps", "0", "--sample-every", "1000", "--log-every",
         "1", "--no-feature-loss"]


def train(*args: str) -> list[str]:
    return [str(BIN / "pdgan-train"), *args]


def make_image_folder(folder: Path, n: int = 40, extra=None):
    """n 32x32 PNGs from the digits (an image folder: no in-training digits evaluation, which would dominate
    the run time)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    folder.mkdir(parents=True)
    d = load_digits().images
    for i in range(n):
        a = (np.kron(d[i % len(d)], np.ones((4, 4))) * 15).clip(0, 255).astype("uint8")
        Image.fromarray(np.stack([a] * 3, -1)).save(folder / f"{i:03d}.png")
    if extra:
        extra(folder)


def state_info(run_dir: Path) -> dict:
    code = ("import sys, json, torch\nfrom pdgan_infer import load_checkpoint\nout = {}\n"
            "try:\n    s = torch.load(sys.argv[1] + '/train_state.pt', weights_only=True)\n"
            "    out['state_step'] = s.get('step')\nexcept Exception as e:\n    out['state'] = repr(e)[:120]\n"
            "try:\n    m = load_checkpoint(sys.argv[1] + '/model.safetensors')\n"
            "    ps = [p for p in m.parameters()]\n"
            "    out['model_step'] = m.checkpoint_meta.get('step')\n"
            "    out['finite'] = all(bool(torch.isfinite(p).all()) for p in ps)\n"
            "    out['max_abs'] = max(float(p.abs().max()) for p in ps)\n"
            "except Exception as e:\n    out['model'] = repr(e)[:160]\nprint(json.dumps(out))\n")
    r = subprocess.run([PY, "-c", code, str(run_dir)], check=False, capture_output=True, text=True)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": r.stderr[-300:]}


def _torch_edit_state(path: Path, fn):
    import torch
    s = torch.load(path, weights_only=True)
    s = fn(s)
    torch.save(s, path)


def setup_train(work: Path) -> None:
    w = work / "w"
    w.mkdir()
    make_image_folder(w / "ds" / "img")
    r = run(train("--data", "ds/img", "--out", "runs/base", *TRAIN, "--max-steps", "2", "--ckpt-every", "1"), w,
            T_TRAIN)
    if r["rc"] != 0:
        raise SystemExit(f"cannot build the base run: {r['stderr'][-2000:]}")


def _copy_run(w: Path, name: str) -> Path:
    dst = w / "runs" / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(w / "runs" / "base", dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def _cfg_edit(name, **kv):
    def fix(w):
        d = _copy_run(w, name)
        c = json.loads((d / "config.json").read_text())
        c["train"].update(kv)
        if "out" in kv:  # the run directory an older config.json names (absolute: any working directory)
            c["train"]["out"] = str((w / kv["out"]).resolve())
        (d / "config.json").write_text(json.dumps(c))
    return fix


def _state_fix(name, fn):
    def fix(w):
        d = _copy_run(w, name)
        _torch_edit_state(d / "train_state.pt", fn)
    return fix


def _zero(name):
    def fix(w):
        d = _copy_run(w, name)
        (d / "train_state.pt").write_bytes(b"")
    return fix


def _cfg_dir(name):
    def fix(w):
        d = _copy_run(w, name)
        (d / "config.json").unlink()
        (d / "config.json").mkdir()
    return fix


def _cifar(name, batch1):
    def fix(w):
        import pickle

        import numpy as np
        root = w / "ds" / name / "cifar-10-batches-py"
        root.mkdir(parents=True)
        ok = {b"data": np.zeros((16, 3072), np.uint8), b"labels": [0] * 16}
        for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (root / b).write_bytes(pickle.dumps(ok))
        (root / "data_batch_1").write_bytes(batch1)
    return fix


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_cifar",))


def _evil_builtins() -> bytes:
    return b"cbuiltins\neval\n(S'open(\"PWNED_b\",\"w\")'\ntR."


def _trunc_png(folder: Path):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "zz_trunc.png")
    b = (folder / "zz_trunc.png").read_bytes()
    (folder / "zz_trunc.png").write_bytes(b[: len(b) // 2])


def _fifo(folder: Path):
    os.mkfifo(folder / "zz_pipe.png")


TRAIN_CASES: list[dict] = []


def tcase(cid, cmd, then=None, fixture=None, check=None, cwd="w", timeout=T_TRAIN, fsize=None, signals=(),
          must_work=False, note=""):
    TRAIN_CASES.append({"id": cid, "kind": "train", "cmd": cmd, "then_override": then, "fixture": fixture,
                        "check": check, "cwd": cwd, "timeout": timeout, "fsize": fsize, "signals": signals,
                        "must_work": must_work, "note": note})


def _base_unchanged(w, r, info):
    return "data-lost" if tree_sha(w / "runs" / "base") != info["base_before"] else None


R = ["--max-steps", "3"]
for _n, _fx in [("r_zero", _zero("r_zero")),
                ("r_missing_keys", _state_fix("r_missing_keys", lambda s: {"format": s.get("format"), "world": 1})),
                ("r_no_model", _state_fix("r_no_model", lambda s: {k: v for k, v in s.items() if k != "model"})),
                ("r_step_str", _state_fix("r_step_str", lambda s: {**s, "step": "abc"})),
                ("r_cfgjson_dir", _cfg_dir("r_cfgjson_dir"))]:
    tcase(f"train.resume.{_n}", train("--resume", f"runs/{_n}", *R), fixture=_fx, check=_base_unchanged)
tcase("train.resume.r_cfgjson_types", train("--resume", "runs/r_cfgjson_types", *R),
      fixture=_cfg_edit("r_cfgjson_types", max_steps="ten", out="runs/base"), check=_base_unchanged)
tcase("train.resume.r_cfgjson_types2", train("--resume", "runs/r_cfgjson_types2"),
      fixture=_cfg_edit("r_cfgjson_types2", max_steps="ten", out="runs/base"), check=_base_unchanged)
tcase("train.resume.r_cfgjson_lazyfloat", train("--resume", "runs/r_cfgjson_lr", *R),
      fixture=_cfg_edit("r_cfgjson_lr", lazy_reg=1.5, num_workers=-1, out="runs/base"), check=_base_unchanged)


def _copy_check(w, r, info):
    if tree_sha(w / "runs" / "base") != info["base_before"]:
        return "data-lost"
    s = state_info(w / "runs" / "A_copy")
    info["after"] = s
    return None if r["rc"] == 0 and s.get("state_step") == 3 else "data-lost"


tcase("train.resume.copy_writes_original", train("--resume", "runs/A_copy", "--max-steps", "3"),
      fixture=lambda w: _copy_run(w, "A_copy"), check=_copy_check, must_work=True)


def _other_cwd(w, r, info):
    s = state_info(w / "runs" / "A2")
    info["after"] = s
    forked = (w.parent / "w2" / "runs").exists()
    return "data-lost" if forked or s.get("state_step") != 3 else None


tcase("train.resume.other_cwd", train("--resume", "../w/runs/A2", "--max-steps", "3"), cwd="w2",
      fixture=lambda w: (_copy_run(w, "A2"), (w.parent / "w2").mkdir(exist_ok=True)), check=_other_cwd,
      must_work=True)

LONG = ["--data", "ds/img", *TRAIN, "--max-steps", "2000", "--ckpt-every", "1000"]


def _saved_after_signal(w, r, info, name):
    s = state_info(w / "runs" / name)
    info["after"] = s
    if "state_step" not in s and "saved" not in (r["stderr"] + r["stdout"]):
        return "data-lost" if "step 1/" in r["stdout"] + r["stderr"] else None
    if "state_step" in s and "model" in s:
        return "data-lost"  # the model checkpoint does not load
    return None


for _name, _sigs, _cid in [("S3b", [(0, signal.SIGINT, True), (0.15, signal.SIGINT, True)], "train.sigint.double"),
                           ("S5", [(0, signal.SIGHUP, False)], "train.sighup"),
                           ("S7", [(0, signal.SIGTERM, False), (0.25, signal.SIGTERM, False)],
                            "train.sigterm.during_save")]:
    tcase(_cid, train("--out", f"runs/{_name}", *LONG), signals=_sigs,
          check=lambda w, r, info, n=_name: _saved_after_signal(w, r, info, n))


def _concurrent_check(w, r, info):
    r2 = info.get("second")
    lines = [json.loads(x) for x in (w / "runs" / "C0" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = [x["step"] for x in lines if "step" in x and "eval" not in x]
    info["records"] = len(steps)
    both_ok = r["rc"] == 0 and r2 and r2["rc"] == 0
    if both_ok or len(steps) != len(set(steps)):
        return "data-lost"
    if r2 and "Traceback" in r2["stderr"]:
        return "traceback"
    return None


tcase("train.concurrent.0", train("--data", "ds/img", "--out", "runs/C0", *TRAIN, "--max-steps", "3",
                                  "--ckpt-every", "1", "--seed", "0"), check=_concurrent_check, must_work=True,
      note="second process started 1 s later")
tcase("train.data.fifo", train("--data", "ds/fifo", "--out", "runs/ds_fifo", *TRAIN, "--max-steps", "1"),
      fixture=lambda w: make_image_folder(w / "ds" / "fifo", 16, _fifo), timeout=400, must_work=None)
tcase("train.data.cifar_evil", train("--data", "ds/cifar_evil", "--out", "runs/ds_ce", *TRAIN, "--max-steps", "1"),
      fixture=_cifar("cifar_evil", __import__("pickle").dumps(_Evil())))
tcase("train.data.cifar_evil_builtins", train("--data", "ds/cifar_eb", "--out", "runs/ds_ceb", *TRAIN,
                                              "--max-steps", "1"),
      fixture=_cifar("cifar_eb", _evil_builtins()))
tcase("train.data.cifar_list", train("--data", "ds/cifar_list", "--out", "runs/ds_cl", *TRAIN, "--max-steps", "1"),
      fixture=_cifar("cifar_list", __import__("pickle").dumps([1, 2, 3])))


def _late_check(w, r, info):
    s = state_info(w / "runs" / "ds_late")
    info["after"] = s
    m = re.findall(r"step (\d+)/", r["stdout"] + r["stderr"])
    done = int(m[-1]) if m else 0
    if r["rc"] == 0:
        return "accepted"
    return "data-lost" if done and s.get("state_step") != done else None


tcase("train.data.trunc_png_late", train("--data", "ds/late", "--out", "runs/ds_late", *TRAIN, "--max-steps", "12",
                                         "--ckpt-every", "100", "--batch-size", "4"),
      fixture=lambda w: make_image_folder(w / "ds" / "late", 24, _trunc_png), check=_late_check)


tcase("train.out.readonly_midrun", None, note="not reproducible here: needs a chmod while the run is in progress "
      "under dropped capabilities; covered by tests/train/test_run_integrity.py::test_failed_write_names_the_file_and_"
      "keeps_the_checkpoint (unwritable directory)")
tcase("train.disk.100mb.resume", train("--resume", "runs/disk_res", "--max-steps", "3"), fsize=512,
      fixture=lambda w: _copy_run(w, "disk_res"), check=_base_unchanged,
      note="RLIMIT_FSIZE 512 B stands in for the full 100 MB tmpfs")
tcase("train.disk.40kb.samples", train("--data", "ds/img", "--out", "runs/disk_s", *TRAIN, "--max-steps", "2",
                                       "--ckpt-every", "1000", "--sample-every", "1"), fsize=8 << 10,
      note="RLIMIT_FSIZE 8 KB stands in for the 40 KB tmpfs")
tcase("train.disk.1mb", train("--data", "ds/img", "--out", "runs/disk_1m", *TRAIN, "--max-steps", "2",
                              "--ckpt-every", "1"), fsize=1 << 20, note="RLIMIT_FSIZE 1 MB; clean then (control)")


def _nan_check(name):
    def check(w, r, info):
        s = state_info(w / "runs" / name)
        info["after"] = s
        if "model" in s and "model_step" not in s:
            return None if "not found" in s["model"] else "data-lost"
        if s.get("finite") is False or (s.get("max_abs") or 0) > 1e4:
            return "data-lost"
        return None
    return check


tcase("train.nan.lrg1e10", train("--data", "ds/img", "--out", "runs/nan_lrg", *TRAIN, "--max-steps", "6",
                                 "--ckpt-every", "1", "--lr-g", "1e10"), check=_nan_check("nan_lrg"))
tcase("train.nan.resume_good_run", train("--resume", "runs/nanres", "--max-steps", "8", "--lr-g", "1e10",
                                         "--ckpt-every", "1"),
      fixture=lambda w: _copy_run(w, "nanres"), check=_nan_check("nanres"))
tcase("train.nan.lr1", train("--data", "ds/img", "--out", "runs/nan_lr1", *TRAIN, "--max-steps", "6",
                             "--ckpt-every", "1", "--lr-g", "1", "--lr-d", "1"), check=_nan_check("nan_lr1"),
      must_work=None, note="the largest learning rates validation allows (1e10 is refused now): the saved "
      "checkpoint must be finite and bounded")
tcase("train.nan.lrd_nan", train("--data", "ds/img", "--out", "runs/nan_lrd", *TRAIN, "--max-steps", "2",
                                 "--lr-d", "nan", "--dry-run"))
tcase("train.nan.r1_nan", train("--data", "ds/img", "--out", "runs/nan_r1", *TRAIN, "--max-steps", "2",
                                "--r1-gamma", "nan", "--dry-run"), then="accepted")


def _existing_check(w, r, info):
    return "data-lost" if tree_sha(w / "runs" / "exist") != info["exist_before"] else None


tcase("train.out.existing_run_no_resume", train("--data", "ds/img", "--out", "runs/exist", *TRAIN, "--max-steps", "1"),
      fixture=lambda w: _copy_run(w, "exist"), check=_existing_check)


def train_cases(rows) -> list[dict]:
    by_id = {r["case"].split(":")[0]: r for r in rows}
    for c in TRAIN_CASES:
        row = by_id.get(c["id"])
        c["review_case"] = row["case"] if row else c["id"]
        c["then"] = c["then_override"] or (then_outcome(row) if row else "new case")
    return TRAIN_CASES


def run_train(case, work) -> dict:
    w = work / "w"
    if case["cmd"] is None:
        return {"rc": None, "stdout": "", "stderr": "", "s": 0, "now": "not reproducible here", "sent": []}
    if case["fixture"]:
        case["fixture"](w)
    info = {"base_before": tree_sha(w / "runs" / "base"), "exist_before": tree_sha(w / "runs" / "exist")}
    cwd = w if case["cwd"] == "w" else work / case["cwd"]
    cwd.mkdir(exist_ok=True)
    if case["signals"]:
        r = _run_signalled(case, cwd)
    elif case["id"] == "train.concurrent.0":
        r, info["second"] = _run_pair(case, cwd)
    else:
        r = run(case["cmd"], cwd, case["timeout"], fsize=case["fsize"])
    if case["id"].startswith(("cli.train.", "train.nan.r1", "train.nan.lrd")):
        now = classify(r, False)
    else:
        now = classify(r, case["must_work"] if case["must_work"] is not None else True)
        if now == "failed" and not case["must_work"]:
            now = "clean"
        if case["must_work"] is None and now in ("failed", "clean"):
            now = "clean"
    if case["check"] and now not in ("hang",):
        verdict = case["check"](w, r, info)
        if verdict:
            now = verdict
    r["info"] = {k: v for k, v in info.items() if k not in ("base_before", "exist_before", "second")}
    if "second" in info:
        r["info"]["second"] = {"rc": info["second"]["rc"], "message": message(info["second"])}
    return {**r, "now": now}


def _run_signalled(case, cwd) -> dict:
    """Start the run, wait until it logs its first step, then send the case's signals."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(case["cmd"], cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace", preexec_fn=_limits(None))  # noqa: PLW1509
    out = []
    t0 = time.monotonic()
    for line in p.stdout:
        out.append(line)
        if re.match(r"step \d+/", line) or time.monotonic() - t0 > case["timeout"] - 60:
            break
    sent = []
    t1 = time.monotonic()
    for at, sig, group in case["signals"]:
        time.sleep(max(0.0, at - (time.monotonic() - t1)))
        (os.killpg if group else os.kill)(p.pid, sig)
        sent.append(sig)
    rest, _, rc = _finish(p, case["timeout"])
    text = "".join(out) + (rest or "")
    return {"rc": rc, "stdout": text, "stderr": text, "s": round(time.monotonic() - t0, 1), "sent": sent}


def _run_pair(case, cwd):
    e = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p1 = subprocess.Popen(case["cmd"], cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace", preexec_fn=_limits(None))  # noqa: PLW1509
    time.sleep(1.0)
    cmd2 = [x if x != "0" or i == 0 else "1" for i, x in enumerate(case["cmd"])]
    r2 = run(cmd2, cwd, case["timeout"])
    o, er, rc = _finish(p1, case["timeout"])
    return {"rc": rc, "stdout": o, "stderr": er, "s": 0, "sent": []}, r2


# --- main -------------------------------------------------------------------------------------------------------

NOT_REPRODUCIBLE = {
    "train.kill9.weights_tmp": "covered by the slow fault-injection test tests/train/test_train_faults.py (20 kills)",
    "train.kill9.state_tmp": "covered by the slow fault-injection test tests/train/test_train_faults.py (20 kills)",
    "train.kill9.json_tmp": "covered by the slow fault-injection test tests/train/test_train_faults.py (20 kills)",
    "train.kill9.random": "covered by the slow fault-injection test tests/train/test_train_faults.py (20 kills)",
    "train.sigint.double.run2": "a repetition of train.sigint.double (timing-dependent; run once here)",
    "train.sighup.run2": "a repetition of train.sighup",
    "train.concurrent.1": "a repetition of train.concurrent.0 with another start offset",
    "train.concurrent.2": "a repetition of train.concurrent.0 with another start offset",
    "train.out.readonly_midrun": "needs a chmod during the run with capabilities dropped; covered by "
                                 "tests/train/test_run_integrity.py::test_failed_write_names_the_file_and_keeps_the_"
                                 "checkpoint",
}


def all_cases(work: Path, rows) -> list[dict]:
    return [*ck_cases(rows, work, FIXTURES), *cli_cases(rows), *api_cases(rows), *train_cases(rows)]


FIXTURES: dict = {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="regex: run only the case ids it matches")
    ap.add_argument("--rerun-failed", metavar="JSON", help="run only the cases not clean in this earlier result, "
                    "and merge the new outcomes into it")
    ap.add_argument("--workdir", help="scratch folder (default: a new temporary folder, removed at the end)")
    ap.add_argument("--review", default=os.environ.get("PDGAN_REVIEW"),
                    help="the review's Markdown (default $PDGAN_REVIEW); needed unless --render")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"{datetime.date.today().isoformat()}-"
                                         f"{MACHINE}-reliability-rerun"),
                    help="results path without extension (.json and .md are written)")
    ap.add_argument("--render", metavar="JSON", help="only write the .json/.md again from this result")
    args = ap.parse_args(argv)
    if args.render:
        doc = json.loads(Path(args.render).read_text())
        write({c["id"]: c for c in doc["cases"]}, Path(args.out), Path("/nonexistent"), (doc["date"], doc["commit"]))
        return 0
    if not args.review:
        ap.error(f"--review FILE (or $PDGAN_REVIEW): the Markdown of {REVIEW_TITLE}")
    rows = parse_review(Path(args.review))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pdgan-rerun-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    FIXTURES.update(build_ck_fixtures(work))
    setup_cli(work)
    cases = all_cases(work, rows)
    previous = {}
    if args.rerun_failed:
        previous = {c["id"]: c for c in json.loads(Path(args.rerun_failed).read_text())["cases"]}
        cases = [c for c in cases if c["id"] not in previous or not previous[c["id"]]["now"].startswith("clean")]
    if args.only:  # with --rerun-failed: these as well
        every = all_cases(work, rows) if args.rerun_failed else cases
        chosen = {c["id"] for c in cases} if args.rerun_failed else set()
        cases = [c for c in every if c["id"] in chosen or re.search(args.only, c["id"])]
    if any(c["kind"] == "train" and c.get("cmd") for c in cases):
        setup_train(work)
    results = dict(previous)
    print(f"{len(cases)} cases in {work}", flush=True)
    runner = {"ck": run_ck, "cli": run_cli, "api": run_api, "train": run_train}
    for i, c in enumerate(cases, 1):
        try:
            r = runner[c["kind"]](c, work)
        except Exception as e:  # noqa: BLE001 - a harness error is recorded, not fatal
            r = {"rc": None, "stdout": "", "stderr": f"[harness error] {type(e).__name__}: {e}", "s": 0,
                 "now": "harness error"}
        res = {"id": c["id"], "review_case": c.get("review_case", c["id"]), "then": c["then"], "now": r["now"],
               "rc": r["rc"], "seconds": r["s"], "message": message(r) if r["now"] != "not reproducible here"
               else c.get("note", ""), "info": r.get("info", {}),
               "stderr_tail": [x[:300] for x in (r["stderr"] or "").splitlines() if x.strip()][-6:]}
        results[c["id"]] = res
        print(f"[{i}/{len(cases)}] {c['id']}: then {c['then']} -> now {res['now']} ({r['s']} s) {res['message'][:150]}",
              flush=True)
    for cid, why in NOT_REPRODUCIBLE.items():
        if cid not in results or results[cid]["now"] == "not reproducible here":
            row = next((r for r in rows if r["case"].split(":")[0] == cid), None)
            results[cid] = {"id": cid, "review_case": row["case"] if row else cid,
                            "then": then_outcome(row) if row else "", "now": "not reproducible here",
                            "rc": None, "seconds": 0, "message": why, "info": {}}
    write(results, Path(args.out), work)
    if not args.workdir:
        subprocess.run(["chmod", "-R", "u+rwX", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def then_class(then: str) -> str:
    """The review's outcome as one of the classes of the re-run (a bare exit status 1/2 was clean, 0 worked)."""
    if then in ("1", "2", "-9", "wrong message (clean)"):  # -9: the review's own kill, nothing lost
        return "clean"
    if then in ("0", "OK", "control", "clean (control)"):
        return "clean (worked)"
    return then


def write(results: dict, out: Path, work: Path, stamp: tuple[str, str] | None = None) -> None:
    """The .json and .md of `results`; `stamp` (date, commit) of the run when re-rendering an older one."""
    cases = list(results.values())
    for c in cases:
        c["then_class"] = then_class(c["then"])
    count = lambda key: {k: sum(1 for c in cases if c[key] == k) for k in sorted({c[key] for c in cases})}  # noqa
    now_clean = lambda c: c["now"].startswith("clean") or c["now"] in ("not reproducible here",)  # noqa
    date, commit = stamp or (datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                             subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False,
                                            capture_output=True, text=True).stdout.strip())
    doc = {"review": REVIEW_TITLE, "date": date, "commit": commit,
           "command": "nice -n 10 .venv/bin/python benchmarks/reliability_rerun.py",
           "counts_then": count("then_class"), "counts_now": count("now"),
           "not_clean_now": [c["id"] for c in cases if not now_clean(c)], "cases": cases}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    md = [f"# Reliability review re-run ({doc['date']}, commit {doc['commit']})", "",
          f"`{doc['command']}` re-ran every case of {REVIEW_TITLE} whose outcome was "
          "not clean (traceback, hang, bad input accepted, data lost), per loader for the checkpoint fixtures, "
          "plus controls, one at a time under a timeout, through the installed CLIs and the Engine API in a "
          "subprocess. Full disks are a per-process file-size limit (RLIMIT_FSIZE: \"File too large\") instead "
          "of the review's small tmpfs mounts; unreadable files run with the DAC capabilities dropped (setpriv). "
          "`then` is the review's outcome (for a checkpoint fixture: that loader's), `now` this run's: clean = "
          "exit 1/2 or a documented exception, one line, no traceback (or, for a control, it worked); warned = "
          "it worked and said what is wrong; the kill -9 rows are the slow fault-injection test "
          "(tests/train/test_train_faults.py). `*_v2` fixtures are the same damage to a checkpoint written by the "
          "current save_checkpoint (content digest embedded).", "",
          f"Cases: {len(cases)}. Then: {doc['counts_then']}. Now: {doc['counts_now']}.", "",
          "| case | then | now | message |", "|---|---|---|---|"]
    for c in cases:
        msg = c["message"].replace("|", "\\|").replace(str(work), "SCRATCH")[:220]
        md.append(f"| {c['id']} | {c['then']} | {c['now']} | {msg} |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {out.with_suffix('.json')} and .md; now: {doc['counts_now']}")


if __name__ == "__main__":
    sys.exit(main())
