"""MMRec's own DRAGON (MARGO's backbone) on our Baby-shaped data, for bench.train_speed: an
unmodified MMRec checkout's ``src`` copied to WORKDIR/mmrec and run in a subprocess on the CPU
(their code is never imported here), with DRAGON's ``user_graph_dict.npy`` built by one sparse
product in the format of MMRec's ``preprocessing/dualgnn-gen-u-u-matrix.py``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEPS = ["torch_geometric", "pandas", "pyyaml", "lmdb", "pillow"]
# MMRec's data module imports torchvision for raw-image loaders that DRAGON on precomputed features
# never calls; PyPI's torchvision is a CUDA build that cannot load beside our CPU torch: a shim
SHIM = {"torchvision/__init__.py": "", "torchvision/transforms/__init__.py": "from torchvision.transforms.functional import *  # noqa\n",
        "torchvision/transforms/functional.py": "def _unused(*args, **kwargs):\n    raise NotImplementedError("
        "'torchvision shim: the raw-image path is not benchmarked')\npad = resize = _unused\n"}
DATASET = "synth_baby"  # MMRec's dataset config for it: bench/templates/mmrec_dragon.yaml
# Run-time compatibility (their files stay as cloned): DRAGON registers ``result_embed`` as a
# parameter, then assigns a plain tensor to it in every forward, which current torch refuses; it
# becomes a plain attribute (overwritten before every use: nothing trained changes, and Adam skips
# its n_nodes x 64 state, in DRAGON's favour). numpy aliases removed in 1.24 (np.float, np.int) restored.
DRIVER = """
import resource, sys, numpy, torch
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
quick_start(model="DRAGON", dataset=sys.argv[3], save_model=False, config_dict={
    "use_gpu": False, "gpu_id": 0, "data_path": "../data/", "epochs": int(sys.argv[1]), "seed": [999],
    "learning_rate": [0.001], "reg_weight": [0.001], "aggr_mode": ["add"], "eval_step": 1, "save_recommended_topk": False})
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def user_graph_dict(inter: Path, max_neighbours: int = 200) -> dict[int, list[list]]:
    """DRAGON's user graph input: user -> [neighbour ids, co-occurrence counts], count desc."""
    import scipy.sparse as sp

    with open(inter, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    cols = [header.index(c) for c in ("userID", "itemID", "x_label")]
    rows = np.loadtxt(inter, delimiter="\t", skiprows=1, usecols=cols, dtype=np.int64, ndmin=2)
    train = rows[rows[:, 2] == 0]
    r = sp.csr_matrix((np.ones(len(train), np.float32), (train[:, 0], train[:, 1])),
                      shape=(int(rows[:, 0].max()) + 1, int(rows[:, 1].max()) + 1))
    r.data[:] = 1.0
    c = (r @ r.T).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    out: dict[int, list[list]] = {}
    for u in range(c.shape[0]):  # per-row top-k of a sparse row, once
        cols, vals = c.indices[c.indptr[u] : c.indptr[u + 1]], c.data[c.indptr[u] : c.indptr[u + 1]]
        out[u] = [cols[order := np.lexsort((cols, -vals))[:max_neighbours]].tolist(),
                  vals[order].astype(float).tolist()]
    return out


def prepare(mmrec: Path, data: Path, deps_dir: Path, workdir: Path, log: Any) -> Path:
    """MMRec's extra packages (once), and WORKDIR/mmrec/src with our data linked in its layout."""
    if not (deps_dir / ".complete").is_file():
        log(f"[bench] installing MMRec's dependencies {DEPS} into {deps_dir} (pip, once)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(deps_dir), *DEPS], check=True)
        for rel, text in SHIM.items():
            (deps_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (deps_dir / rel).write_text(text)
        (deps_dir / ".complete").write_text("ok\n")
    if not (mmrec / "src" / "models" / "dragon.py").is_file():
        raise SystemExit(f"--mmrec {mmrec}: no src/models/dragon.py (expected an MMRec checkout)")
    shutil.rmtree(root := workdir / "mmrec", ignore_errors=True)
    shutil.copytree(mmrec / "src", root / "src")
    (ds := root / "data" / DATASET).mkdir(parents=True)
    for name in (f"{DATASET}.inter", "image_feat.npy", "text_feat.npy"):  # our synth bundle is in MMRec's layout
        if not (data / name).is_file():
            raise SystemExit(f"{data}: missing {name}")
        os.symlink((data / name).resolve(), ds / name)
    t0 = time.perf_counter()
    np.save(ds / "user_graph_dict.npy", user_graph_dict(data / f"{DATASET}.inter"))
    log(f"[bench] DRAGON user graph built in {time.perf_counter() - t0:.1f}s")
    shutil.copy(Path(__file__).parent / "templates" / "mmrec_dragon.yaml",
                root / "src" / "configs" / "dataset" / f"{DATASET}.yaml")
    return root / "src"


def run(mmrec: Path, data: Path, deps_dir: Path, workdir: Path, epochs: int, threads: int, log: Any) -> dict[str, Any]:
    """DRAGON for ``epochs`` epochs in a fresh process (lr 1e-3, reg 1e-3, seed 999, CPU): per-epoch
    and evaluation seconds from MMRec's own log lines."""
    src = prepare(mmrec, data, deps_dir, workdir, log)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(deps_dir), str(src)]), "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load, t0 = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(epochs), str(threads), DATASET], cwd=src, env=env,
                          capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    train, evals = ([float(s) for s in re.findall(rf"epoch \d+ {what} \[time: ([0-9.]+)s", text)] for what in ("training", "evaluating"))
    if proc.returncode != 0 or not train:
        raise RuntimeError(f"MMRec DRAGON failed (exit {proc.returncode}):\n" + "\n".join(text.splitlines()[-25:]))
    log(f"[bench] DRAGON epochs {train} s, evaluations {evals} s")
    rss = re.search(r"PEAK_RSS_KB (\d+)", text)
    return {"kind": "dragon", "threads": threads, "epochs": epochs, "epoch_seconds": train, "median_s": float(np.median(train)),
            # MMRec times validation alone on this line; its test pass follows, untimed
            "eval_seconds": evals, "eval_median_s": float(np.median(evals)) if evals else None,
            "peak_rss_mb": round(int(rss.group(1)) / 1024.0, 1) if rss else None, "loadavg_start": load,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()], "process_wall_s": round(time.perf_counter() - t0, 1)}
