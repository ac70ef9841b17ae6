"""One GPU check: what moclip gets out of a GPU machine, measured in one run of under 5 minutes.

It writes one JSON file and one Markdown table (default ``bench/results/gpu_check/``: ``gpu_check.json``,
``gpu_check.md``; ``--out DIR`` elsewhere). CLIP weights are always random init (``weights="none"``): the check
needs no download and measures throughput only, never accuracy. The parts, each run on its own (a part that fails
records its error and the others go on; the exit status is then 1):

  clip_raw     raw CLIP forward images/s (ViT-B-32, fp16) for batch sizes 64 ... 1024: ``encode_image`` on a
               tensor already on the device
  clip_stage   moclip's CLIP stage images/s for the same batch sizes, as a worker runs it: on CUDA the GPU
               worker's ``Embedder`` (two threads, one torch thread), on the CPU ``embed``, of uint8 398x224 frames
               (what the decoder hands over for 16:9 video: crop, stack, pinned copy, normalise, forward, copy
               back), timed interleaved with the raw forward; stage/raw per batch size (goal >= 0.8)
  index        ``moclip index`` (the real CLI, a subprocess) on generated H.264 clips (bench/corpora.py):
               videos/s, worker seconds per stage, GPU utilisation sampled by nvidia-smi every 200 ms, and which
               of decode or GPU limits the throughput
  train        ``moclip train`` on the labelled synthetic demo corpus (moclip/demo/synth.py), indexed first:
               seconds of the MV net and of the fusion head (the bundle's ``time_per_stage_s``)
  cpu_clip, cpu_index, cpu_train
               the CPU baseline on the same machine in the same run (CLIP at the CPU's auto precision, bf16 or
               fp32; the index with one worker per core; training on the same dataset), for GPU/CPU speed-ups

With ``--device cpu`` the first four parts run on the CPU and there is no separate baseline; ``--quick`` shrinks
everything (batch sizes 8 and 16, four 160x120 clips, one epoch) for the CPU smoke test in
tests/test_gpu_check.py. The CLI runs share one local Prefect server started here (unless PREFECT_API_URL names
one), with their own PREFECT_HOME and MOCLIP_CACHE in a temporary work folder unless those are set.

On a GPU machine with this repo:   bash bench/gpu_check.sh          (makes .venv first if there is none)
                                   .venv/bin/python bench/gpu_check.py [--out DIR] [--decode-workers N] ...
Exit status: 0 all parts passed; 1 a part failed (see "error" in the JSON); 2 --device cuda without a CUDA device.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

MODEL = "ViT-B-32"
WEIGHTS_NOTE = "CLIP weights: random init (throughput only)"
FRAME_W, FRAME_H = 398, 224  # what the decoder hands CLIP for 16:9 video (short side 224)
STAGE_GOAL = 0.8
BUSY_GPU = 60.0  # % mean utilisation while the GPU worked, from which the GPU (not decode) is the limit


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the full check fits in 5 minutes on 16 cores + one H200; quick is the CPU smoke test."""

    batch_sizes: tuple[int, ...]
    images_per_rep: int  # CLIP images per timed repetition (at least one batch)
    reps: int  # timed repetitions (median)
    cpu_batch: int  # the CPU baseline's CLIP batch size
    cpu_images_per_rep: int  # images_per_rep on the CPU (the baseline, and --device cpu)
    videos: int  # index corpus: H.264 clips ...
    video_size: tuple[int, int]  # ... of this width x height ...
    video_frames: int  # ... and length (25 fps)
    demo_clips_per_class: int  # train: demo corpus (10 classes, 320x240, 2-4 s each)
    demo_frames: int  # CLIP frames per demo video
    mv_epochs: int
    head_epochs: int


FULL = Sizes(batch_sizes=(64, 128, 256, 512, 1024), images_per_rep=4096, reps=3, cpu_batch=64,
             cpu_images_per_rep=128, videos=192, video_size=(1280, 720), video_frames=150, demo_clips_per_class=20,
             demo_frames=8, mv_epochs=40, head_epochs=100)
QUICK = Sizes(batch_sizes=(8, 16), images_per_rep=8, reps=1, cpu_batch=8, cpu_images_per_rep=8, videos=4,
              video_size=(160, 120), video_frames=50, demo_clips_per_class=3, demo_frames=2, mv_epochs=1, head_epochs=1)


# --- timing ----------------------------------------------------------------------------------------------------


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds per function, runs interleaved A B A B ... so drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def clip_encoder(device: str, precision: str):
    from moclip.clip import load_clip
    from moclip.config import ClipConfig

    return load_clip(ClipConfig(model=MODEL, weights="none", precision=precision), device=device)


def raw_forward(enc, batch: int, n_images: int) -> tuple[Callable[[], None], int]:
    """A function running ``n_images // batch`` raw forwards of one device tensor, and how many images that is."""
    import torch

    x = torch.randn((batch, 3, enc.image_size, enc.image_size), device=enc.device).to(enc.dtype)
    steps = max(1, n_images // batch)
    cuda = enc.device.type == "cuda"

    def run() -> None:
        with torch.inference_mode():
            for _ in range(steps):
                enc.model.encode_image(x)
        if cuda:
            torch.cuda.synchronize(enc.device)

    return run, steps * batch


def decoder_frames(n: int, distinct: int = 256):
    """``n`` uint8 HxWx3 frames the size the decoder hands over (``distinct`` different ones, repeated)."""
    import numpy as np

    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8) for _ in range(min(n, distinct))]
    return [pool[i % len(pool)] for i in range(n)]


def measure_raw(enc, sizes: Sizes, batches: tuple[int, ...]) -> dict[str, float]:
    out = {}
    for b in batches:
        run, n = raw_forward(enc, b, max(b, sizes.images_per_rep))
        run()  # warm-up (kernel selection for this shape)
        out[str(b)] = round(n / interleaved({"raw": run}, sizes.reps)["raw"], 1)
        print(f"    batch {b:5d}: raw forward {out[str(b)]:10,.1f} images/s", flush=True)
    return out


def stage_run(enc, frames: list, batch: int) -> Callable[[], object]:
    """The CLIP stage as a worker runs it: on CUDA the GPU worker's ``Embedder`` (moclip/indexing/pool.py: one
    batch per call, two threads, at the one torch thread a Dask worker has), on the CPU ``embed()``."""
    if enc.device.type != "cuda":
        return lambda: enc.embed(frames, batch_size=batch)
    import torch

    from moclip.indexing.pool import Embedder

    def run() -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            embedder = Embedder(enc, batch)
            embedder.add(0, frames)
            embedder.finish()
        finally:
            torch.set_num_threads(threads)

    return run


def measure_stage(enc, sizes: Sizes, batches: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Per batch size: embed() images/s, the raw forward's timed interleaved with it, and their ratio."""
    frames = decoder_frames(max(max(batches), sizes.images_per_rep))
    stage, raw, ratio = {}, {}, {}
    for b in batches:
        run_raw, n = raw_forward(enc, b, max(b, sizes.images_per_rep))
        run_stage = stage_run(enc, frames[:n], b)
        run_raw(), run_stage()  # warm-up
        t = interleaved({"raw": run_raw, "stage": run_stage}, sizes.reps)
        k = str(b)
        stage[k], raw[k], ratio[k] = round(n / t["stage"], 1), round(n / t["raw"], 1), round(t["raw"] / t["stage"], 3)
        print(f"    batch {b:5d}: stage {stage[k]:10,.1f} images/s, raw {raw[k]:10,.1f}, ratio {ratio[k]:.2f}",
              flush=True)
    return {"images_per_s": stage, "raw_images_per_s": raw, "ratio_to_raw": ratio}


# --- GPU utilisation -------------------------------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi's utilisation and memory every 200 ms in a background process, while the block runs."""

    QUERY = ["--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "200"]

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.samples: list[tuple[float, int, float, float]] = []  # (s since start, GPU index, util %, MiB used)
        self.note: str | None = None if enabled else "CPU run: no GPU sampled"
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        exe = shutil.which("nvidia-smi") if self.enabled else None
        if self.enabled and exe is None:
            self.note = "nvidia-smi not found: GPU utilisation not sampled"
        if exe:
            self.t0 = time.monotonic()
            self.proc = subprocess.Popen([exe, *self.QUERY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                idx, util, mem = (p.strip() for p in line.split(","))
                self.samples.append((round(time.monotonic() - self.t0, 2), int(idx), float(util), float(mem)))
            except ValueError:  # "[N/A]" or a partial line
                continue

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            from flows.server import terminate

            terminate(self.proc)
            self.thread.join(timeout=5)

    def summary(self) -> dict | None:
        """Mean utilisation over the run and over the time the GPU worked (first to last busy sample), per GPU."""
        if not self.samples:
            return {"available": False, "note": self.note or "nvidia-smi gave no samples"}
        per_gpu = {}
        for gpu in sorted({s[1] for s in self.samples}):
            rows = [s for s in self.samples if s[1] == gpu]
            busy = [i for i, s in enumerate(rows) if s[2] > 0]
            window = rows[busy[0]:busy[-1] + 1] if busy else []
            per_gpu[str(gpu)] = {
                "samples": len(rows), "mean_util": round(statistics.mean(s[2] for s in rows), 1),
                "busy_mean_util": round(statistics.mean(s[2] for s in window), 1) if window else 0.0,
                "busy_seconds": round(window[-1][0] - window[0][0], 1) if window else 0.0,
                "max_memory_mib": max(s[3] for s in rows)}
        means = list(per_gpu.values())
        return {"available": True, "interval_ms": 200,
                "mean_util": round(statistics.mean(g["mean_util"] for g in means), 1),
                "busy_mean_util": round(statistics.mean(g["busy_mean_util"] for g in means), 1),
                "per_gpu": per_gpu, "samples": [list(s) for s in self.samples[:5000]]}


def throughput_limit(worker_s: dict[str, float], util: dict | None, device: str) -> tuple[str, str]:
    """("decode" or "GPU" (CUDA) / "CLIP" (CPU), why) from the run's worker seconds and GPU utilisation."""
    decode, embed = worker_s.get("decode", 0.0), worker_s.get("embed", 0.0)
    secs = f"decode {decode:.1f} worker-s vs embed {embed:.1f} worker-s"
    if worker_s.get("wall"):  # a decoder pool's shards: how much of their wall time CLIP was busy
        secs += f" (CLIP busy {embed / worker_s['wall']:.0%} of the shards' wall time)"
    if device != "cuda":
        return ("decode" if decode >= embed else "CLIP"), secs
    busy = util.get("busy_mean_util") if util and util.get("available") else None
    if busy is None:
        return ("decode" if decode > embed else "GPU"), f"no GPU utilisation samples, from worker seconds only: {secs}"
    if busy >= BUSY_GPU:
        return "GPU", f"GPU {busy:.0f} % busy on average while it worked; {secs}"
    if decode >= embed:
        return "decode", f"GPU mostly idle ({busy:.0f} % on average while it worked); {secs}"
    return "GPU", (f"GPU {busy:.0f} % busy, yet embed seconds dominate ({secs}): the GPU worker's host side "
                   "(crop, stack, copy) limits")


# --- the moclip CLI --------------------------------------------------------------------------------------------


def moclip_command() -> list[str]:
    """The ``moclip`` console script next to this interpreter, else on PATH, else the CLI module run directly."""
    exe = Path(sys.executable).parent / "moclip"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("moclip")
    return [found] if found else [sys.executable, "-c", "from flows.cli import entry; entry()"]


def last_json_object(text: str) -> dict:
    """The last JSON object in ``text`` that starts a line (the CLI prints a summary line, then the JSON)."""
    decoder, found = json.JSONDecoder(), None
    for i in [0] + [j + 1 for j in range(len(text)) if text[j] == "\n"]:
        if text.startswith("{", i):
            try:
                found = decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    if not isinstance(found, dict):
        raise ValueError(f"no JSON object in the command's output: {text[-500:]!r}")
    return found


class SharedServer:
    """One local Prefect server for every CLI run of the check (each CLI would otherwise start its own)."""

    def __init__(self) -> None:
        self.server = None
        self.url: str | None = os.environ.get("PREFECT_API_URL")
        self.note = "PREFECT_API_URL given" if self.url else None

    def launch(self) -> None:
        if self.url or self.note:
            return
        try:
            from flows.server import LocalServer

            self.server = LocalServer()
            self.server.launch()
        except Exception as e:  # noqa: BLE001 - the CLIs then start their own servers
            self.server, self.note = None, f"no shared server ({type(e).__name__}: {e}): each CLI run starts its own"

    def wait(self) -> str | None:
        if self.server is not None and self.url is None:
            from flows.server import server_startup_budget

            try:
                self.server.wait_ready(server_startup_budget())
                self.url, self.note = self.server.api_url, "one local server shared by the CLI runs"
            except Exception as e:  # noqa: BLE001
                self.stop()
                self.note = f"shared server did not start ({e}): each CLI run starts its own"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


# --- the check -------------------------------------------------------------------------------------------------


class Check:
    """The run's settings, work folder and results; ``run_part`` runs one part and saves the report."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args, self.sizes, self.device = args, sizes, args.device
        self.out = Path(args.out)
        self.work = Path(tempfile.mkdtemp(prefix="moclip-gpu-check-"))
        self.t0 = time.perf_counter()
        self.parts: dict[str, dict] = {}
        self.server = SharedServer()
        self._corpus: Path | None = None
        self._demo: Path | None = None
        self.demo_index: dict | None = None  # how the demo dataset was indexed (part train)
        self.env = {"PREFECT_HOME": os.environ.get("PREFECT_HOME") or str(self.work / "prefect-home"),
                    "MOCLIP_CACHE": os.environ.get("MOCLIP_CACHE") or str(self.work / "cache"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        os.environ.update(self.env)  # before Prefect is imported: the shared server uses them too

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, line: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {line}", flush=True)

    @property
    def index_args(self) -> list[str]:
        """The index options given to the check, passed on to the device-under-test's index runs only."""
        flags = {"decode_workers": "--decode-workers", "batch_size": "--batch-size", "shard_size": "--shard-size",
                 "workers": "--workers"}
        return [a for k, flag in flags.items() if getattr(self.args, k) is not None
                for a in (flag, str(getattr(self.args, k)))]

    def run_part(self, name: str, title: str, fn: Callable[[], dict]) -> None:
        if self.elapsed() > self.args.budget_s:
            self.parts[name] = {"ok": False, "error": f"skipped: the check's budget of {self.args.budget_s:.0f} s "
                                                      "was spent (--budget-s)"}
            self.say(f"{name}: skipped (budget spent)")
            self.save()
            return
        self.say(f"{name}: {title} ...")
        t = time.perf_counter()
        try:
            result = {"ok": True, **fn()}
        except Exception as e:  # noqa: BLE001 - a failing part must not lose the others
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:4000],
                      "traceback": traceback.format_exc()[-4000:]}
            self.say(f"{name}: FAILED: {result['error'][:500]}")
        result["part_seconds"] = round(time.perf_counter() - t, 1)
        self.parts[name] = result
        self.save()

    def cli(self, args: list[str], log_name: str) -> tuple[str, float, str]:
        """Run ``moclip ARGS``; (its stdout, seconds, the command line). Its stderr goes to a log in the work folder."""
        cmd = [*moclip_command(), *args]
        env = {**os.environ, **self.env}
        if self.server.wait():
            env["PREFECT_API_URL"] = self.server.url
        timeout = max(30.0, self.args.budget_s - self.elapsed()) + 30  # the budget, give or take a minute
        log = self.work / f"{log_name}.log"
        self.say(f"  $ {shlex.join(cmd)}")
        t = time.perf_counter()
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=REPO,
                                    start_new_session=True)  # its own process group: a timeout ends its workers too
            try:
                stdout, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                raise RuntimeError(f"`{shlex.join(cmd)}` ran past {timeout:.0f} s and was killed") from None
            except BaseException:  # Ctrl-C: its workers must not outlive the check
                kill_group(proc)
                raise
        secs = time.perf_counter() - t
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-2500:]
            raise RuntimeError(f"`{shlex.join(cmd)}` exited with {proc.returncode} after {secs:.0f} s:\n{tail}")
        return stdout, secs, shlex.join(cmd)

    # --- inputs shared by parts (made once, on first use) ---

    def index_corpus(self) -> Path:
        if self._corpus is None:
            self._corpus = make_index_corpus(self.work / "corpus", self.sizes)
            self.say(f"  corpus: {self.sizes.videos} H.264 clips ({distinct_clips(self.sizes)} distinct) "
                     f"{size_text(self.sizes.video_size)} x {self.sizes.video_frames} frames in {self._corpus}")
        return self._corpus

    def demo_dataset(self) -> Path:
        """The demo corpus, generated and indexed on the device under test (once)."""
        if self._demo is None:
            from moclip.demo import generate_demo_corpus

            corpus, dataset = self.work / "demo-corpus", self.work / "demo-dataset"
            generate_demo_corpus(corpus, clips_per_class=self.sizes.demo_clips_per_class)
            stdout, secs, cmd = self.cli(["index", str(corpus), "--out", str(dataset), "--layout", "folder",
                                          "--clip-weights", "none", "--device", self.device, "--frames",
                                          str(self.sizes.demo_frames), "--json", *self.index_args], "index-demo")
            s = last_json_object(stdout)
            self.demo_index = {"videos": s["indexed_ok"], "failed": s["failed"], "wall_seconds": s["wall_seconds"],
                               "command": cmd}
            self._demo = dataset
        return self._demo

    # --- report ---

    def report(self) -> dict:
        return {"check": "moclip gpu_check", "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "device": self.device, "quick": self.args.quick, "clip_model": MODEL,
                "clip_weights": "none: random init (throughput only)", "machine": machine(),
                "sizes": asdict(self.sizes), "index_options": self.index_args, "prefect_server": self.server.note,
                "parts": self.parts, "speedups": speedups(self.parts),
                "failed": [k for k, v in self.parts.items() if not v.get("ok")],
                "total_seconds": round(self.elapsed(), 1)}

    def save(self) -> None:
        """Write the JSON and the Markdown table (after every part: a check killed half-way keeps what it has)."""
        report = self.report()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / "gpu_check.md").write_text("\n".join(markdown(report)) + "\n")


def kill_group(proc: subprocess.Popen) -> None:
    """End a CLI run started here and the processes it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def distinct_clips(sizes: Sizes) -> int:
    return min(sizes.videos, os.cpu_count() or 1)


def make_index_corpus(root: Path, sizes: Sizes) -> Path:
    """``sizes.videos`` H.264 clips of bench/corpora.py's panning texture: one distinct clip per core, encoded in
    parallel, then copied under new names up to the count (each file is indexed on its own; encoding 720p costs
    several times what indexing it does)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from corpora import make_clip

    root.mkdir(parents=True, exist_ok=True)
    (w, h), n = sizes.video_size, sizes.video_frames
    paths = [root / f"clip{i:04d}.mp4" for i in range(sizes.videos)]
    distinct = paths[:distinct_clips(sizes)]
    with ProcessPoolExecutor(len(distinct), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(make_clip, distinct, ["libx264"] * len(distinct), [w] * len(distinct), [h] * len(distinct),
                      [n] * len(distinct), range(len(distinct))))
    for i, path in enumerate(paths[len(distinct):]):
        shutil.copyfile(distinct[i % len(distinct)], path)
    return root


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    import torch
    from common import cpu_description

    cuda = torch.cuda.is_available()
    return {"gpu": torch.cuda.get_device_name(0) if cuda else None, "gpus": torch.cuda.device_count() if cuda else 0,
            "cuda": torch.version.cuda, "cpu": cpu_description(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "nvidia_smi": shutil.which("nvidia-smi")}


# --- the parts -------------------------------------------------------------------------------------------------


def part_clip_raw(check: Check, device: str, precision: str, batches: tuple[int, ...]) -> dict:
    enc = clip_encoder(device, precision)
    return {"device": device, "precision": enc.precision, "model": MODEL, "images_per_s": measure_raw(
        enc, check.sizes, batches)}


def part_clip_stage(check: Check, device: str, precision: str, batches: tuple[int, ...]) -> dict:
    enc = clip_encoder(device, precision)
    return {"device": device, "precision": enc.precision, "model": MODEL, "frame_size": [FRAME_W, FRAME_H],
            "goal_ratio": STAGE_GOAL, **measure_stage(enc, check.sizes, batches)}


def part_index(check: Check, device: str, extra: list[str]) -> dict:
    corpus = check.index_corpus()
    args = ["index", str(corpus), "--out", str(check.work / f"dataset-{device}"), "--layout", "unlabeled",
            "--clip-weights", "none", "--device", device, "--json", *extra]
    with GpuSampler(enabled=device == "cuda") as gpu:
        stdout, secs, cmd = check.cli(args, f"index-{device}")
    s = last_json_object(stdout)
    if not s.get("indexed_ok"):
        raise RuntimeError(f"no video indexed: {s.get('failures')}")
    util = gpu.summary()
    limit, why = throughput_limit(s.get("worker_seconds", {}), util, device)
    vps = s["indexed_ok"] / s["wall_seconds"]
    spans = s.get("shard_timeline") or []  # [worker, start, end, videos]: while shards ran, without start-up
    shard_vps = (sum(v for *_, v in spans) / (max(e for _, _, e, _ in spans) - min(b for _, b, _, _ in spans))
                 if spans and max(e for _, _, e, _ in spans) > min(b for _, b, _, _ in spans) else None)
    check.say(f"  {s['indexed_ok']} videos in {s['wall_seconds']:.1f} s: {vps:.2f} videos/s; limit: {limit} ({why})")
    return {"device": device, "videos": check.sizes.videos, "video_size": list(check.sizes.video_size),
            "video_frames": check.sizes.video_frames, "distinct_clips": distinct_clips(check.sizes), "codec": "H.264",
            "videos_per_s": round(vps, 3),
            "videos_per_s_in_shards": round(shard_vps, 3) if shard_vps else None,
            **{k: s.get(k) for k in ("indexed_ok", "failed", "wall_seconds", "worker_seconds", "images_embedded",
                                     "frames_decoded", "workers")},
            "command": cmd, "command_seconds": round(secs, 1), "gpu_util": util, "limit": limit, "limit_reason": why}


def part_train(check: Check, device: str) -> dict:
    dataset, s = check.demo_dataset(), check.sizes
    model = check.work / f"model-{device}"
    args = ["train", str(dataset), "--out", str(model), "--device", device, "--mv-epochs", str(s.mv_epochs),
            "--head-epochs", str(s.head_epochs), "--patience", str(max(s.mv_epochs, s.head_epochs)), "--no-flip"]
    _, secs, cmd = check.cli(args, f"train-{device}")
    meta = json.loads((model / "bundle.json").read_text())
    times, curves = meta["time_per_stage_s"], meta.get("curves", {})
    out = {"device": device, "precision": meta.get("precision"), "mvnet": meta.get("train_config", {}).get("mvnet"),
           "train_videos": meta.get("dataset", {}).get("n_train"), "dataset_index": check.demo_index,
           "mv_net_seconds": times["mv_net"], "fusion_head_seconds": times["fusion_head"],
           "mv_epochs_run": len(curves.get("mv_net", {}).get("train_loss", [])),
           "head_epochs_run": len(curves.get("fusion", {}).get("train_loss", [])),
           "time_per_stage_s": times, "command": cmd, "command_seconds": round(secs, 1)}
    check.say(f"  MV net {out['mv_net_seconds']:.2f} s ({out['mv_epochs_run']} epochs), fusion head "
              f"{out['fusion_head_seconds']:.2f} s ({out['head_epochs_run']} epochs) on {device}")
    return out


def speedups(parts: dict[str, dict]) -> dict[str, float | None]:
    """GPU over CPU, from the parts of this run (None where either side is missing)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    def get(name: str, *keys: str) -> float | None:
        v = parts.get(name) or {}
        if not v.get("ok"):
            return None
        for k in keys:
            v = (v or {}).get(k)
        return v

    stage = get("clip_stage", "images_per_s") or {}
    return {"clip_stage_best": ratio(max(stage.values(), default=None), get("cpu_clip", "stage_images_per_s")),
            "index_videos_per_s": ratio(get("index", "videos_per_s"), get("cpu_index", "videos_per_s")),
            "mv_net_train": ratio(get("cpu_train", "mv_net_seconds"), get("train", "mv_net_seconds")),
            "fusion_head_train": ratio(get("cpu_train", "fusion_head_seconds"), get("train", "fusion_head_seconds"))}


def part_cpu_clip(check: Check) -> dict:
    b = check.sizes.cpu_batch
    enc = clip_encoder("cpu", "auto")
    m = measure_stage(enc, replace(check.sizes, images_per_rep=check.sizes.cpu_images_per_rep), (b,))
    return {"device": "cpu", "precision": enc.precision, "model": MODEL, "batch": b, "frame_size": [FRAME_W, FRAME_H],
            "stage_images_per_s": m["images_per_s"][str(b)], "raw_images_per_s": m["raw_images_per_s"][str(b)],
            "ratio_to_raw": m["ratio_to_raw"][str(b)]}


def run_check(check: Check) -> None:
    dev, s = check.device, check.sizes
    precision = "fp16" if dev == "cuda" else "auto"
    check.server.launch()  # boots while CLIP loads; waited for before the first timing (a quiet machine)
    try:
        clip_encoder(dev, precision)
    except Exception:  # noqa: BLE001 - the CLIP parts load it again and record the error
        pass
    check.server.wait()
    check.run_part("clip_raw", f"raw CLIP forward, {MODEL} {precision} on {dev}",
                   lambda: part_clip_raw(check, dev, precision, s.batch_sizes))
    check.run_part("clip_stage", f"CLIP stage (embed of {FRAME_W}x{FRAME_H} uint8 frames) on {dev}",
                   lambda: part_clip_stage(check, dev, precision, s.batch_sizes))
    check.run_part("index", f"moclip index on {dev}", lambda: part_index(check, dev, check.index_args))
    check.run_part("train", f"moclip train on {dev} (demo corpus)", lambda: part_train(check, dev))
    if dev == "cuda":  # the baseline last: where the budget runs out, the GPU's own figures are there
        check.run_part("cpu_clip", "CPU baseline: CLIP stage at the CPU's auto precision", lambda: part_cpu_clip(check))
        check.run_part("cpu_index", "CPU baseline: moclip index --device cpu", lambda: part_index(check, "cpu", []))
        check.run_part("cpu_train", "CPU baseline: moclip train --device cpu", lambda: part_train(check, "cpu"))


# --- Markdown --------------------------------------------------------------------------------------------------


def num(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def failed_line(name: str, part: dict | None) -> list[str]:
    if part is None or part.get("ok"):
        return []
    first = (part.get("error") or "?").splitlines()[0][:300].replace("`", "'")
    return [f"**{name} failed**: `{first}`", ""]


def md_clip(r: dict) -> list[str]:
    raw, stage = r["parts"].get("clip_raw") or {}, r["parts"].get("clip_stage") or {}
    prec = stage.get("precision") or raw.get("precision") or "?"
    lines = [f"### CLIP ({MODEL}, {prec}, {r['device']}): raw forward vs the CLIP stage", "",
             f"Stage: uint8 {FRAME_W}x{FRAME_H} frames through "
             + ("the GPU worker's `Embedder` (two threads, one torch thread; crop, stack, pinned copy to the GPU, "
                if r["device"] == "cuda" else "`embed` (crop, stack, ")
             + "normalise, forward, copy back); raw: `encode_image` on a tensor already on the device, timed "
             "interleaved with the stage.", "",
             f"| batch | raw forward images/s | stage images/s | stage/raw (goal >= {STAGE_GOAL}) |",
             "|---:|---:|---:|---:|"]
    for b in r["sizes"]["batch_sizes"]:
        k = str(b)
        ratio = (stage.get("ratio_to_raw") or {}).get(k)
        lines.append(f"| {b} | {num((raw.get('images_per_s') or {}).get(k))} | "
                     f"{num((stage.get('images_per_s') or {}).get(k))} | "
                     f"{'—' if ratio is None else f'**{ratio:.2f}**'} |")
    cpu = r["parts"].get("cpu_clip")
    if cpu and cpu.get("ok"):
        lines += ["", f"CPU baseline ({cpu['precision']}, batch {cpu['batch']}): stage "
                      f"{num(cpu['stage_images_per_s'])} images/s, raw {num(cpu['raw_images_per_s'])} images/s "
                      f"(ratio {cpu['ratio_to_raw']:.2f}); GPU best stage / CPU stage: "
                      f"**{num(r['speedups']['clip_stage_best'], 1)}x**"]
    return lines + [""] + failed_line("clip_raw", raw or None) + failed_line("clip_stage", stage or None) + \
        failed_line("cpu_clip", cpu)


def md_index(r: dict) -> list[str]:
    s = r["sizes"]
    lines = [f"### moclip index: {s['videos']} H.264 clips, {size_text(s['video_size'])}, {s['video_frames']} frames "
             "each", "",
             "| device | videos/s | videos/s while shards ran | indexed | wall s | decode s | embed s | write s | "
             "load_model s | images embedded | GPU util mean / while busy | limit |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in ("index", "cpu_index"):
        p = r["parts"].get(name)
        if not p or not p.get("ok"):
            continue
        ws, u = p.get("worker_seconds") or {}, p.get("gpu_util") or {}
        util = f"{u['mean_util']:.0f} % / {u['busy_mean_util']:.0f} %" if u.get("available") else "—"
        lines.append(f"| {p['device']} | **{p['videos_per_s']:.2f}** | {num(p.get('videos_per_s_in_shards'), 2)} "
                     f"| {p['indexed_ok']} | {num(p['wall_seconds'])} "
                     f"| {num(ws.get('decode'))} | {num(ws.get('embed'))} | {num(ws.get('write'))} | "
                     f"{num(ws.get('load_model'))} | {p['images_embedded']} | {util} | {p['limit']} |")
    lines.append("")
    gpu = r["parts"].get("index") or {}
    if gpu.get("ok"):
        u = gpu.get("gpu_util") or {}
        lines += [f"Limit ({gpu['device']}): **{gpu['limit']}**: {gpu['limit_reason']}."
                  + ("" if u.get("available") or gpu["device"] != "cuda" else f" ({u.get('note')})"), ""]
    if r["speedups"]["index_videos_per_s"]:
        lines += [f"GPU / CPU videos/s: **{r['speedups']['index_videos_per_s']:.2f}x**", ""]
    if r["index_options"]:
        lines += [f"Index options: `{' '.join(r['index_options'])}` (the {r['device']} runs)", ""]
    return lines + failed_line("index", r["parts"].get("index")) + failed_line("cpu_index", r["parts"].get("cpu_index"))


def md_train(r: dict) -> list[str]:
    s = r["sizes"]
    lines = [f"### moclip train: demo corpus ({10 * s['demo_clips_per_class']} videos), {s['mv_epochs']} MV-net and "
             f"{s['head_epochs']} fusion-head epochs (no early stop)", "",
             "| device | precision | train videos | MV net s | fusion head s |", "|---|---|---:|---:|---:|"]
    for name in ("train", "cpu_train"):
        p = r["parts"].get(name)
        if p and p.get("ok"):
            lines.append(f"| {p['device']} | {p['precision']} | {p['train_videos']} | {p['mv_net_seconds']:.2f} | "
                         f"{p['fusion_head_seconds']:.2f} |")
    sp = r["speedups"]
    if sp["mv_net_train"] or sp["fusion_head_train"]:
        lines += ["", f"CPU / GPU seconds: MV net **{num(sp['mv_net_train'], 2)}x**, fusion head "
                      f"**{num(sp['fusion_head_train'], 2)}x**"]
    return lines + [""] + failed_line("train", r["parts"].get("train")) + \
        failed_line("cpu_train", r["parts"].get("cpu_train"))


def markdown(r: dict) -> list[str]:
    m = r["machine"]
    gpu = f"{m['gpu']} (x{m['gpus']}, CUDA {m['cuda']})" if m["gpu"] else "none"
    # no heading of its own: bench/run_all.py puts this table under its "## GPU" section, as the other results
    lines = [f"Measured {r['created_at']} by bench/gpu_check.py" + (" --quick" if r["quick"] else "")
             + f" ({r['total_seconds']:.0f} s in all):", "",
             f"- {WEIGHTS_NOTE}", f"- device under test: {r['device']}", f"- GPU: {gpu}",
             f"- CPU: {m['cpu']}", f"- torch {m['torch']}, Python {m['python']}", f"- Prefect: {r['prefect_server']}",
             f"- parts failed: {', '.join(r['failed']) or 'none'}", ""]
    return lines + md_clip(r) + md_index(r) + md_train(r)


# --- main ------------------------------------------------------------------------------------------------------


def wxh(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x360, got {text!r}") from None
    return w, h


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default: GPU parts plus the CPU baseline) or cpu (the same parts on the CPU only)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for the CPU smoke test")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu_check"),
                    help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="parts that would start after this many seconds are skipped (and count as failed)")
    ap.add_argument("--videos", type=int, help="clips in the index corpus")
    ap.add_argument("--video-size", type=wxh, help="index corpus clip size, WxH (e.g. 640x360)")
    ap.add_argument("--video-frames", type=int, help="frames per index corpus clip")
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder (corpora, datasets, CLI logs)")
    for flag in ("decode-workers", "batch-size", "shard-size", "workers"):
        ap.add_argument(f"--{flag}", type=int, help=f"passed to the index runs as --{flag} (default: moclip's)")
    return ap.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    s = QUICK if args.quick else FULL
    if args.videos:
        s = replace(s, videos=args.videos)
    if args.video_size:
        s = replace(s, video_size=args.video_size)
    if args.video_frames:
        s = replace(s, video_frames=args.video_frames)
    if args.device == "cpu":
        s = replace(s, images_per_rep=s.cpu_images_per_rep)
    return s


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees none "
              "here (torch.cuda.is_available() is False: no GPU, or a driver too old for this CUDA build, see "
              "nvidia-smi); run with --device cpu for the CPU-only check",
              file=sys.stderr)
        return 2
    check = Check(args, sizes_for(args))
    check.say(f"moclip GPU check on {args.device}{' (quick)' if args.quick else ''}: {WEIGHTS_NOTE}; "
              f"work folder {check.work}")
    try:
        run_check(check)
    finally:
        check.server.stop()
        check.save()
        if not args.keep_work:
            shutil.rmtree(check.work, ignore_errors=True)
    print("\n".join(markdown(check.report())))
    failed = check.report()["failed"]
    check.say(f"wrote {check.out / 'gpu_check.json'} and {check.out / 'gpu_check.md'}"
              + (f"; FAILED parts: {', '.join(failed)}" if failed else "; all parts passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
