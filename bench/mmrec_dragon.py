"""MMRec's own DRAGON (MARGO's backbone) timed on our Baby-shaped data, for bench.train_speed.

The ratio to REFERENCE-NUMBERS.md's 69 s/epoch only means something side by side on the same
machine state, so an unmodified MMRec checkout (``--mmrec PATH``, e.g. a clone of enoche/MMRec)
runs in a subprocess on the CPU. ``prepare`` copies its ``src`` into WORKDIR/mmrec (their code is
never imported here), links our synth bundle (already the MMRec layout: ``<name>.inter`` with
``x_label``, ``image_feat.npy``, ``text_feat.npy``), writes a dataset yaml and DRAGON's
``user_graph_dict.npy`` (per user, up to 200 co-occurring users by count, descending: the format
of MMRec's ``preprocessing/dualgnn-gen-u-u-matrix.py``, built with one sparse product instead of
its hours-long pair loop); ``run`` calls ``quick_start`` (lr 1e-3, reg 1e-3, seed 999, CPU, N
epochs) and parses MMRec's own log lines. MMRec's extra dependencies (``DEPS``, a torchvision
shim) go to ``--mmrec-deps`` on first use.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

DEPS = ["torch_geometric", "pandas", "pyyaml", "lmdb", "pillow"]
# MMRec's data module imports torchvision for its raw-image loaders, which DRAGON on
# precomputed features never calls; PyPI's torchvision is a CUDA build that cannot load next to
# our CPU torch, so a shim package answers the import and fails loudly if anything calls it
SHIM = {
    "torchvision/__init__.py": "",
    "torchvision/transforms/__init__.py": "from torchvision.transforms.functional import *  # noqa\n",
    "torchvision/transforms/functional.py": "def _unused(*args, **kwargs):\n    raise NotImplementedError("
    "'torchvision shim: the raw-image path is not benchmarked')\npad = resize = _unused\n",
}
DATASET = "synth_baby"
TRAIN_RE = re.compile(r"epoch (\d+) training \[time: ([0-9.]+)s")
EVAL_RE = re.compile(r"epoch (\d+) evaluating \[time: ([0-9.]+)s")


def user_graph_dict(inter: Path, max_neighbours: int = 200) -> dict[int, list[list]]:
    """DRAGON's user graph input: user -> [neighbour ids, co-occurrence counts], count desc."""
    import scipy.sparse as sp

    with open(inter, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    cols = [header.index(c) for c in ("userID", "itemID", "x_label")]
    rows = np.loadtxt(inter, delimiter="\t", skiprows=1, usecols=cols, dtype=np.int64, ndmin=2)
    n_users, n_items = int(rows[:, 0].max()) + 1, int(rows[:, 1].max()) + 1
    train = rows[rows[:, 2] == 0]
    r = sp.csr_matrix((np.ones(len(train), np.float32), (train[:, 0], train[:, 1])), shape=(n_users, n_items))
    r.data[:] = 1.0
    c = (r @ r.T).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    out: dict[int, list[list]] = {}
    for u in range(n_users):  # per-row top-k of a sparse row: a loop over users, done once
        lo, hi = c.indptr[u], c.indptr[u + 1]
        cols, vals = c.indices[lo:hi], c.data[lo:hi]
        order = np.lexsort((cols, -vals))[:max_neighbours]
        out[u] = [cols[order].tolist(), vals[order].astype(float).tolist()]
    return out


def ensure_deps(deps_dir: Path, log) -> None:
    if (deps_dir / ".complete").is_file():
        return
    log(f"[bench] installing MMRec's dependencies {DEPS} into {deps_dir} (pip, once)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(deps_dir), *DEPS], check=True)
    for rel, text in SHIM.items():
        (deps_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (deps_dir / rel).write_text(text)
    (deps_dir / ".complete").write_text("ok\n")


def prepare(mmrec: Path, data: Path, workdir: Path, log) -> Path:
    """Return WORKDIR/mmrec/src, ready for ``run``."""
    src = mmrec / "src"
    if not (src / "models" / "dragon.py").is_file():
        raise SystemExit(f"--mmrec {mmrec}: no src/models/dragon.py (expected an MMRec checkout)")
    root = workdir / "mmrec"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(src, root / "src")
    ds = root / "data" / DATASET
    ds.mkdir(parents=True)
    for name in (f"{DATASET}.inter", "image_feat.npy", "text_feat.npy"):
        if not (data / name).is_file():
            raise SystemExit(f"{data}: missing {name}")
        os.symlink((data / name).resolve(), ds / name)
    t0 = time.perf_counter()
    np.save(ds / "user_graph_dict.npy", user_graph_dict(data / f"{DATASET}.inter"))
    log(f"[bench] DRAGON user graph built in {time.perf_counter() - t0:.1f}s")
    (root / "src" / "configs" / "dataset" / f"{DATASET}.yaml").write_text(textwrap.dedent(f"""\
        USER_ID_FIELD: userID
        ITEM_ID_FIELD: itemID
        TIME_FIELD: timestamp
        filter_out_cod_start_users: True
        inter_file_name: '{DATASET}.inter'
        vision_feature_file: 'image_feat.npy'
        text_feature_file: 'text_feat.npy'
        user_graph_dict_file: 'user_graph_dict.npy'
        field_separator: "\\t"
        """))
    return root / "src"


# One compatibility patch, applied at run time (their files stay as cloned): DRAGON registers
# ``result_embed`` as a parameter and then assigns a plain tensor to it in every forward,
# which current torch refuses; it becomes a plain attribute (it is overwritten before every
# use, so nothing trained changes; Adam then skips its n_nodes x 64 state, in DRAGON's favour).
# MMRec's metrics use numpy aliases removed in numpy 1.24 (np.float, np.int): restored.
DRIVER = """
import sys, numpy, torch
for _name, _type in (("float", float), ("int", int), ("bool", bool)):
    if _name not in numpy.__dict__:
        setattr(numpy, _name, _type)
torch.set_num_threads(int(sys.argv[2]))
import models.dragon as dragon
_init = dragon.DRAGON.__init__
def _init_compat(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    del self._parameters["result_embed"]
    self.result_embed = None
dragon.DRAGON.__init__ = _init_compat
from utils.quick_start import quick_start
quick_start(model="DRAGON", dataset="{dataset}", save_model=False, config_dict={{
    "use_gpu": False, "gpu_id": 0, "data_path": "../data/", "epochs": int(sys.argv[1]),
    "seed": [999], "learning_rate": [0.001], "reg_weight": [0.001], "aggr_mode": ["add"],
    "eval_step": 1, "save_recommended_topk": False,
}})
import resource
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
RSS_RE = re.compile(r"PEAK_RSS_KB (\d+)")


def run(src: Path, deps_dir: Path, epochs: int, threads: int, log) -> dict[str, Any]:
    """Train DRAGON for ``epochs`` epochs in a fresh process; per-epoch and eval seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(deps_dir), str(src)]), "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load, t0 = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    cmd = [sys.executable, "-c", DRIVER.format(dataset=DATASET), str(epochs), str(threads)]
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, check=False)
    wall, text = time.perf_counter() - t0, proc.stdout + proc.stderr
    train, evals = ([float(s) for _, s in rx.findall(text)] for rx in (TRAIN_RE, EVAL_RE))
    if proc.returncode != 0 or not train:
        raise RuntimeError(f"MMRec DRAGON failed (exit {proc.returncode}):\n" + "\n".join(text.splitlines()[-25:]))
    log(f"[bench] DRAGON epochs {train} s, evaluations {evals} s")
    return {"kind": "dragon", "threads": threads, "epochs": epochs, "epoch_seconds": train,
            "median_s": float(np.median(train)),  # all epochs, as for ours
            # MMRec times validation alone on this line; its test pass follows, untimed
            "eval_seconds": evals, "eval_median_s": float(np.median(evals)) if evals else None,
            "peak_rss_mb": round(int(rss.group(1)) / 1024.0, 1) if (rss := RSS_RE.search(text)) else None,
            "loadavg_start": load, "loadavg_end": [round(x, 2) for x in os.getloadavg()], "process_wall_s": round(wall, 1)}
