"""The paper profile, executed at full size on CPU: `diad train configs/paper.yaml` + `diad evaluate`.

Builds an SD-1.5-sized UNet (860M parameters) and KL-f8 autoencoder with RANDOM weights from the SD-1.5 configs
shipped in diad/models/sd15, saves them in diffusers format (unet/, vae/ via save_pretrained), writes a few
256 px images of the synthetic-defect generator in MVTec layout, then runs the two CLI commands as
subprocesses exactly as a user would (autoencoder stage + denoiser for two optimizer steps, batch 1; evaluation
with T=1000 and 10 DDIM steps) and records each command's wall time and peak resident memory. The weights are
random, so the metrics mean nothing: this proves the path runs and measures what it costs.

A memory watchdog stops a command when the machine's available memory drops under --stop-gib (the box is shared).

    DIAD_CACHE=/tmp/me/cache .venv/bin/python bench/bench_paper_full.py          # full size (see BENCHMARKS.md)
    .venv/bin/python bench/bench_paper_full.py --tiny --out-dir /tmp/x           # same path, tiny widths, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchlib import BENCH_DIR, RESULTS_DIR, markdown_table, work_dir, write_results

REPO = BENCH_DIR.parent
PAPER_YAML = REPO / "configs" / "paper.yaml"
CATEGORY = "brick"  # one synthetic-defect category (a scikit-image texture: no extra data needed)

# The paper profile's structure (4 UNet levels x 2 res blocks, cross-attention at three levels, KL-f8 with
# 4 levels, SG network + SFF, frozen SD encoder) at narrow widths: the same code path in seconds.
TINY_MODEL = {
    "unet": {"block_out_channels": [32, 32, 64, 64], "cross_attention_dim": 32, "attention_heads": 2,
             "norm_num_groups": 8, "context_tokens": 8},
    "autoencoder": {"block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8},
    "sg": {"hint_channels": [8, 8, 16, 16]},
}
TINY_IMAGE_SIZE = 128  # latent 16x16 -> SGEB4 2x2, the smallest SFF allows with four UNet levels


def sd15_kwargs(tiny: bool) -> tuple[dict, dict]:
    """(UNet config, VAE config) in diffusers format: the shipped SD-1.5 ones, narrowed when tiny."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from diad.models.pretrained import SD15_CONFIG_DIR

    unet = dict(UNet2DConditionModel.load_config(SD15_CONFIG_DIR / "unet"))
    vae = dict(AutoencoderKL.load_config(SD15_CONFIG_DIR / "vae"))
    if tiny:
        u, a = TINY_MODEL["unet"], TINY_MODEL["autoencoder"]
        unet.update(block_out_channels=u["block_out_channels"], cross_attention_dim=u["cross_attention_dim"],
                    attention_head_dim=u["attention_heads"], norm_num_groups=u["norm_num_groups"])
        vae.update(block_out_channels=a["block_out_channels"], norm_num_groups=a["norm_num_groups"])
    return unet, vae


def write_random_sd15(out: Path, tiny: bool = False, seed: int = 0, device=None) -> dict:
    """SD-1.5-sized (or tiny) UNet + VAE with random weights, saved in diffusers format under out/{unet,vae}.

    device: where the random init runs (a GPU does the 860M-parameter init in a fraction of the CPU's time)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet_cfg, vae_cfg = sd15_kwargs(tiny)
    torch.manual_seed(seed)
    counts = {}
    for name, cls, cfg in (("unet", UNet2DConditionModel, unet_cfg), ("vae", AutoencoderKL, vae_cfg)):
        with torch.device(device or "cpu"):
            model = cls.from_config(cfg)
        counts[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        model.save_pretrained(out / name, safe_serialization=True)
        del model
    return counts


def write_images(root: Path, size: int, n_train: int, n_test: int) -> Path:
    """A few images of one synthetic-defect category in MVTec layout (train/good, test/<defect>, ground_truth)."""
    from diad.data import write_synth_dataset

    return write_synth_dataset(root, [CATEGORY], n_train, n_test, size, seed=0, overwrite=True)


# ---- running a CLI command under a memory watchdog ------------------------------------------------------------

def mem_available_gib() -> float:
    """MemAvailable of the whole machine (what other processes can still get), GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def _rss_gib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


@dataclass
class Watched:
    """What one command cost: wall seconds, peak RSS (kernel's maxrss of the child), the watchdog's view."""

    name: str
    rc: int
    wall_s: float
    cpu_s: float  # user + system seconds of the command (less moved by other jobs than wall time)
    peak_rss_gib: float
    min_available_gib: float
    stopped_by_watchdog: bool
    stdout_tail: str


def run_watched(name: str, cmd: list[str], env: dict, stop_gib: float, log: Path) -> Watched:
    """Run cmd; kill it (its process group) if the machine's available memory drops under stop_gib."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        state = {"min_avail": mem_available_gib(), "stopped": False, "done": False}

        def watch() -> None:
            while not state["done"]:
                avail = mem_available_gib()
                state["min_avail"] = min(state["min_avail"], avail)
                if avail < stop_gib and not state["stopped"]:
                    state["stopped"] = True
                    print(f"{name}: available memory {avail:.1f} GiB < {stop_gib} GiB: stopping it "
                          f"(its RSS: {_rss_gib(proc.pid):.1f} GiB)", flush=True)
                    os.killpg(proc.pid, signal.SIGKILL)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        state["done"] = True
        watcher.join()
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return Watched(name, proc.returncode, time.perf_counter() - t0, usage.ru_utime + usage.ru_stime,
                   usage.ru_maxrss / 2**20, state["min_avail"],
                   state["stopped"], tail)


def paper_overrides(weights: Path, data_root: Path, tiny: bool, threads: int, size: int) -> list[str]:
    """`diad train configs/paper.yaml` overrides: these weights and images, 2 + 2 steps at batch 1, CPU."""
    out = [f"model.pretrained_dir={weights}"]
    if tiny:
        out += [f"model.{net}.{k}={json.dumps(v)}" for net, sub in TINY_MODEL.items() for k, v in sub.items()]
    out += [f"data.root={data_root}", f"data.categories=[{CATEGORY}]", f"data.image_size={size}",
            "train.steps=2", "train.batch_size=1", "train.autoencoder.steps=2", "train.autoencoder.batch_size=1",
            "train.val_batches=1", f"train.num_threads={threads}", "train.device=cpu",
            f"eval.num_threads={threads}", "eval.device=cpu", "eval.batch_size=2"]
    return out


STANDIN_CODE = """
import sys
from pathlib import Path
from diad import checkpoint as ckpt
from diad.config import load_run_config
from diad.models import build_model
cfg = load_run_config(sys.argv[1], sys.argv[3:])
model = build_model(cfg.model)  # SD weights from the folder, SG copied from them: the state before training
ckpt.save_checkpoint(ckpt.step_dir(Path(sys.argv[2]) / "checkpoints", 0), model, cfg.model_dump(mode="json"), 0,
                     metrics={"loss": float("nan"), "val_loss": float("nan"), "note": "untrained stand-in"})
"""


def _wait_for_memory(gib: float, limit_s: float) -> float:
    """Seconds waited until `gib` GiB are available (the machine is shared; gives up after limit_s)."""
    t0 = time.perf_counter()
    while mem_available_gib() < gib and time.perf_counter() - t0 < limit_s:
        time.sleep(2)
    return time.perf_counter() - t0


def _dir_gib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30


def _run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the same path at tiny widths and 128 px (seconds)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of train and evaluate")
    ap.add_argument("--n-train", type=int, default=6, help="training images (one category)")
    ap.add_argument("--n-test", type=int, default=4, help="test images (half defective)")
    ap.add_argument("--stop-gib", type=float, default=3.0, help="stop a command when available memory drops under")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: $DIAD_CACHE/bench/paper_full)")
    ap.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                    help="set glibc's MALLOC_MMAP_THRESHOLD_ for the commands (recorded in the results)")
    ap.add_argument("--wait-gib", type=float, default=0.0,
                    help="before each command, wait (up to --wait-s) until this much memory is available")
    ap.add_argument("--wait-s", type=float, default=600.0)
    ap.add_argument("--eval-only", action="store_true",
                    help="skip `diad train`: evaluate the model as built from the weights folder (a checkpoint "
                         "written by this bench), when the machine cannot hold the training peak")
    ap.add_argument("--keep", action="store_true", help="keep the weights, run and data in --work")
    ap.add_argument("--out-dir", type=Path, default=None, help=f"results dir (default: {RESULTS_DIR})")
    args = ap.parse_args(argv)
    size = TINY_IMAGE_SIZE if args.tiny else 256
    name = ("paper_full_cpu_tiny" if args.tiny else "paper_full_cpu") + ("_eval_only" if args.eval_only else "")
    work = args.work or work_dir(name)
    parts = ("sd15", "data", "run", "eval", "cache")  # only what this bench writes is ever deleted
    for part in parts:
        shutil.rmtree(work / part, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    avail = mem_available_gib()
    print(f"available memory at start: {avail:.1f} GiB", flush=True)
    if avail < args.stop_gib:
        print(f"not starting: under --stop-gib {args.stop_gib}", file=sys.stderr)
        return 1
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "DIAD_CACHE": str(work / "cache")}
    if args.malloc_mmap_threshold:
        # glibc: a fixed threshold stops it from raising it after the first big free, so freed activations of
        # the autoencoder stage go back to the OS instead of staying in the heap
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    t0 = time.perf_counter()
    # in a child process, so this (watching) process never holds the 3.4 GB UNet
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench_paper_full import write_random_sd15, "
            "write_images; from pathlib import Path; w = Path(sys.argv[2]); "
            "c = write_random_sd15(w / 'sd15', tiny=sys.argv[3] == '1'); "
            "write_images(w / 'data', int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])); print(json.dumps(c))")
    made = subprocess.run([sys.executable, "-c", code, str(BENCH_DIR), str(work), "1" if args.tiny else "0", str(size),
                           str(args.n_train), str(args.n_test)], env=env, cwd=REPO, capture_output=True, text=True)
    if made.returncode != 0:
        print(made.stderr[-3000:], file=sys.stderr)
        return 1
    counts = json.loads(made.stdout.strip().splitlines()[-1])
    weights_s = time.perf_counter() - t0
    print(f"random SD-1.5 weights ({counts}) and {args.n_train}+{args.n_test} images written in {weights_s:.1f} s",
          flush=True)
    run, evald = work / "run", work / "eval"
    cli = [sys.executable, "-m", "diad.cli"]
    over = paper_overrides(work / "sd15", work / "data", args.tiny, args.threads, size)
    train_cmd = cli + ["train", str(PAPER_YAML), *over, "--out", str(run)]  # progress bars go to the log
    if args.eval_only:
        train_cmd = [sys.executable, "-c", STANDIN_CODE, str(PAPER_YAML), str(run), *over]
    steps = [("write untrained checkpoint" if args.eval_only else "train", train_cmd),
             ("evaluate", cli + ["evaluate", str(run), "--out", str(evald), "--no-progress"])]
    results = []
    for step, cmd in steps:
        waited = _wait_for_memory(args.wait_gib, args.wait_s)
        print(f"{step}: {' '.join(cmd[1:])} (waited {waited:.0f} s; {mem_available_gib():.1f} GiB available)", flush=True)
        res = run_watched(step, cmd, env, args.stop_gib, work / f"{step}.log")
        results.append(res)
        print(f"{step}: rc {res.rc}, {res.wall_s:.1f} s, peak RSS {res.peak_rss_gib:.2f} GiB, "
              f"min available {res.min_available_gib:.1f} GiB", flush=True)
        if res.rc != 0:
            print(res.stdout_tail, file=sys.stderr)
            break
    ok = all(r.rc == 0 for r in results) and len(results) == len(steps)
    extra = {}
    if ok:
        if not args.eval_only:
            extra["train_result"] = json.loads((run / "train_result.json").read_text())
        extra["metrics_mean"] = json.loads((evald / "metrics.json").read_text())["per_category"]["mean"]
        extra["checkpoint_gib"] = _dir_gib(run / "checkpoints")
    payload = {"tiny": args.tiny, "image_size": size, "n_train": args.n_train, "n_test": args.n_test,
               "threads": args.threads, "weights": "random (speed/memory only)", "params": counts,
               "malloc_mmap_threshold": args.malloc_mmap_threshold, "eval_only": args.eval_only,
               "write_weights_s": weights_s, "commands": [asdict(r) for r in results], "ok": ok, **extra,
               "rerun": "DIAD_CACHE=/tmp/$USER/cache .venv/bin/python bench/bench_paper_full.py"
                        + (" --tiny" if args.tiny else "")}
    header = ["command", "exit", "wall s", "CPU s", "peak RSS GiB", "min available GiB"]
    rows = [[r.name, r.rc, round(r.wall_s, 1), round(r.cpu_s, 1), round(r.peak_rss_gib, 2), round(r.min_available_gib, 1)]
            for r in results]
    trained = ("no training (--eval-only: the model as built from the weights)" if args.eval_only
               else "train: AE 2 steps + denoiser 2 steps at batch 1")
    md = (f"paper profile ({'tiny widths' if args.tiny else 'SD-1.5 sizes'}, random weights), {size} px, CPU, "
          f"{args.threads} thread(s); {trained}; evaluate: "
          f"{args.n_test} images, T=1000, 10 DDIM steps\n\n" + markdown_table(header, rows))
    js, _ = write_results(name, payload, md, args.out_dir or RESULTS_DIR)
    print(md + f"\nwrote {js}")
    if not args.keep:
        for part in parts:
            shutil.rmtree(work / part, ignore_errors=True)
    return 0 if ok else 1


def main(argv=None) -> int:
    return _run(argv)


if __name__ == "__main__":
    sys.exit(main())
