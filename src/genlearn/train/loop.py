"""The one training loop, for every family: the model owns `train_step`, the loop owns the rest.

The rest is: seeding, data order and dynamic binarization, learning-rate schedule, progress bar,
validation, metrics.jsonl and TensorBoard, atomic checkpoints every `checkpoint_every` seconds,
Ctrl-C (checkpoint and exit), NaN/Inf detection (stop; the last good checkpoint stays), resume,
and data parallelism under torchrun.

Exact resumption: the order of epoch e is a permutation drawn from a generator seeded by
(seed, e); the binarization noise and the model's own noise come from generators whose states
are saved in every checkpoint; evaluation and pictures run under `fork_rng` with their own seed,
so they never move the training RNG. A run stopped at any step and resumed therefore ends with
the same weights, bit for bit, as one that never stopped.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from genlearn import __version__
from genlearn import config as cfg
from genlearn import data as datasets
from genlearn.data import mnist
from genlearn.errors import Interrupted, TrainingError, UserError
from genlearn.train import checkpoint, distributed


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no CUDA GPU is available; use the cpu")
    return torch.device(name)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) alone, so resuming recomputes it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def lr_factor(schedule: str, progress: float, final: float) -> float:
    if schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


def schedule_progress(model, step: int, total_steps: int) -> float:
    """How far the lr schedule has run at `step`: step / total_steps, or the model's own
    `schedule_progress(step, total_steps)` where it trains in phases that each want the whole
    schedule (a DBN's layers, one after another)."""
    own = getattr(model, "schedule_progress", None)
    return own(step, total_steps) if own is not None else step / max(total_steps, 1)


@contextmanager
def _separate_rng(seed: int):
    """Evaluation and pictures draw from their own seed and leave the training RNG untouched."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop stops between steps, so no update is half-applied."""

    def __init__(self):
        self.raised = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Metrics:
    """metrics.jsonl (one JSON object per line) and TensorBoard scalars, on the main rank only."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = run_dir / checkpoint.METRICS_FILE
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """On resume, forget lines logged after the checkpoint (they will be logged again)."""
        if not (self.enabled and self.path.exists()):
            return
        keep = [
            ln
            for ln in self.path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step
        ]
        checkpoint.atomic_write(self.path, "".join(ln + "\n" for ln in keep))

    def log(self, record: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch", "split", "time") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _trainer_state(model, step, epoch, batch, elapsed, data_gen, noise_states, window) -> dict[str, Any]:
    return {
        "log_window": window,
        "step": step,
        "epoch": epoch,
        "batch": batch,
        "elapsed": elapsed,
        "optimizers": {k: opt.state_dict() for k, opt in model.optimizers.items()},
        "data_rng": data_gen.get_state(),
        "torch_rng": noise_states[0],
        "cuda_rng": noise_states[1],
    }


def _noise_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8)
    return torch.get_rng_state(), cuda


def fit(
    model: torch.nn.Module,
    config: Any,
    run_dir: str | Path,
    name: str,
    resume: bool = False,
    progress: bool = True,
    data: mnist.MNIST | None = None,
) -> dict[str, Any]:
    """Train `model` as `config` says, writing the run directory; returns results.json's content."""
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    group = distributed.init(device)
    main = group.is_main
    if config.batch_size % group.world:
        raise UserError(f"batch_size {config.batch_size} must divide evenly over {group.world} ranks")
    model.to(device)  # initial weights were drawn from config.seed (registry.instantiate)
    binary = model.data_kind == "binary"

    data = data or datasets.load(config)
    datasets.check_fits(model, data, getattr(config, "dataset", "mnist"))
    if hasattr(model, "prepare"):  # data-dependent initialisation; a resumed run loads over it
        model.prepare(data, config.batch_size)
    n_train = len(data.train_x)
    steps_per_epoch = n_train // config.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{n_train} training images are fewer than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs

    step = epoch = batch_in_epoch = 0
    elapsed = 0.0
    data_gen = torch.Generator().manual_seed(config.seed + 7919)
    torch.manual_seed(config.seed * 1009 + group.rank + 1)  # model noise: distinct per rank
    if resume:
        checkpoint.recover(run_dir)
        state = checkpoint.load_trainer(run_dir)
        checkpoint.load_weights(run_dir, model)
        for key, opt in model.optimizers.items():
            fresh_lrs = [g["lr"] for g in opt.param_groups]  # from the (possibly --set) config
            opt.load_state_dict(state["optimizers"][key])
            for g, lr in zip(opt.param_groups, fresh_lrs):
                g["initial_lr"] = lr
        step, epoch, batch_in_epoch, elapsed = state["step"], state["epoch"], state["batch"], state["elapsed"]
        data_gen.set_state(state["data_rng"])
        if group.active:  # each rank's noise continues from where rank 0's checkpoint left it
            torch.manual_seed(config.seed * 1009 + group.rank + 1 + step)
        else:
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state["cuda_rng"].numel():
                torch.cuda.set_rng_state(state["cuda_rng"], device)
    elif main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (checkpoint.METRICS_FILE, checkpoint.RESULTS_FILE):
            (run_dir / stale).unlink(missing_ok=True)
    if main:
        checkpoint.atomic_write(run_dir / checkpoint.CONFIG_FILE, cfg.to_toml(config, name, __version__))
    distributed.barrier(group)

    for opt in model.optimizers.values():
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])
    distributed.synchronise(model, model.optimizers, group)
    metrics = _Metrics(run_dir, main, getattr(config, "tensorboard", True))
    metrics.truncate_after(step)

    def snapshot() -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """A copy of everything a checkpoint holds, taken now, written later (main rank only)."""
        if not main:
            return None
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        window = {"steps": window_steps, "sums": dict(sums)}
        state = _trainer_state(
            model, step, epoch, batch_in_epoch, elapsed, data_gen, _noise_states(device), window
        )
        return weights, copy.deepcopy(state)

    def write(snap) -> None:
        if snap is not None:
            checkpoint.save(run_dir, *snap)

    def save_now() -> None:
        """Checkpoint the current state unless its weights are no longer finite."""
        snap = snapshot()
        if snap is not None and all(t.isfinite().all() for t in snap[0].values() if t.is_floating_point()):
            write(snap)

    # A periodic checkpoint is written only once the next step's loss, computed at its weights,
    # came out finite: so the checkpoint a NaN leaves behind is one whose weights gave a finite loss.
    # A fresh run's initial state is the first such checkpoint (the very first step checks its loss);
    # a resumed run starts from a checkpoint already on disk.
    # The running sums of the log window are part of the state, so a resumed run logs the same.
    window = state.get("log_window", {}) if resume else {}
    window_steps, sums = window.get("steps", 0), dict(window.get("sums", {}))
    pending = None if resume else snapshot()

    local = config.batch_size // group.world
    rows = slice(group.rank * local, (group.rank + 1) * local)
    last_ckpt = time.monotonic()
    model.train()
    out_of_time = False
    with _StopFlag() as stop:
        while epoch < config.epochs and not out_of_time:
            order = epoch_order(config.seed, epoch, n_train)
            bar = tqdm(
                total=steps_per_epoch,
                initial=batch_in_epoch,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not (progress and main),
                leave=False,
                dynamic_ncols=True,
            )
            t_window, n_window = time.perf_counter(), 0
            while batch_in_epoch < steps_per_epoch:
                t0 = time.perf_counter()
                idx = order[batch_in_epoch * config.batch_size : (batch_in_epoch + 1) * config.batch_size]
                x = data.train_x[idx]
                if binary:
                    x = mnist.binarize(x, data_gen)
                batch = {"x": x[rows].to(device, non_blocking=True), "y": data.train_y[idx][rows].to(device)}
                factor = lr_factor(
                    config.lr_schedule, schedule_progress(model, step, total_steps), config.lr_final
                )
                for opt in model.optimizers.values():
                    for g in opt.param_groups:
                        g["lr"] = g["initial_lr"] * factor
                stats = model.train_step(batch)
                distributed.sync_buffers(model, group)
                bad = [k for k, v in stats.items() if not math.isfinite(v)]
                if bad:
                    bar.close()
                    metrics.close()
                    raise TrainingError(
                        f"{bad[0]} became {stats[bad[0]]} at step {step + 1} (epoch {epoch + 1}); "
                        f"the last good checkpoint in {run_dir} is kept; try a lower lr"
                    )
                write(pending)  # its weights just gave a finite loss
                pending = None
                step += 1
                batch_in_epoch += 1
                elapsed += time.perf_counter() - t0
                n_window += config.batch_size
                window_steps += 1
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                if step % config.log_every == 0:
                    rate = n_window / (time.perf_counter() - t_window)
                    record = {"step": step, "epoch": epoch + batch_in_epoch / steps_per_epoch}
                    record.update({k: v / window_steps for k, v in sums.items()})
                    # the lr a model reports is the one it used (a GAN's decayed lr, a stack's
                    # pretraining lr); otherwise the loop's scheduled value
                    lr = record.get("lr", config.lr * factor)
                    record.update({"lr": lr, "samples_per_s": rate, "time": elapsed})
                    metrics.log(record)
                    bar.set_postfix(
                        {k: f"{v:.4g}" for k, v in record.items() if k in stats} | {"img/s": f"{rate:.0f}"}
                    )
                    t_window, n_window, window_steps, sums = time.perf_counter(), 0, 0, {}
                if distributed.any_rank(stop.raised, group):
                    save_now()
                    bar.close()
                    metrics.close()
                    distributed.shutdown(group)
                    raise Interrupted(step)
                if time.monotonic() - last_ckpt >= config.checkpoint_every:
                    pending = snapshot()
                    last_ckpt = time.monotonic()
                if config.time_limit and elapsed >= config.time_limit:
                    out_of_time = True  # a wall-clock budget: stop mid-epoch, resumable from here
                    break
            bar.close()
            if out_of_time:
                if progress and main:
                    tqdm.write(f"time limit of {config.time_limit:g} s reached at step {step}")
                break
            epoch += 1
            batch_in_epoch = 0
            if config.eval_every and epoch % config.eval_every == 0 and epoch < config.epochs and main:
                record = {"step": step, "epoch": epoch, "split": "valid"}
                record.update(_evaluate(model, data.split("valid", binary), config.seed, device))
                metrics.log(record, prefix="valid")
                if progress:
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "split"))
                    tqdm.write(f"validation: {shown}")
            if time.monotonic() - last_ckpt >= config.checkpoint_every:
                pending = snapshot()
                last_ckpt = time.monotonic()
    save_now()
    results: dict[str, Any] = {}
    if main:
        test = _evaluate(model, data.split("test", binary), config.seed, device)
        results = {
            "model": name,
            "split": "test",
            "data": "binarized MNIST (fixed, seed 0)" if binary else "MNIST intensities",
            "metrics": test,
            "seed": config.seed,
            "epochs": round(epoch + batch_in_epoch / steps_per_epoch, 4),
            "steps": step,
            "stopped_by": "time_limit" if out_of_time else "epochs",
            "train_time_s": round(elapsed, 2),
            "ranks": group.world,
            "device": str(device),
            "genlearn_version": __version__,
        }
        checkpoint.write_json(run_dir / checkpoint.RESULTS_FILE, results)
        metrics.log({"step": step, "epoch": epoch, "split": "test", **test}, prefix="test")
        with _separate_rng(config.seed):
            from genlearn.viz.figures import write_run_figures

            results["figures"] = write_run_figures(model, data, run_dir)
        checkpoint.write_json(run_dir / checkpoint.RESULTS_FILE, results)
    metrics.close()
    distributed.barrier(group)
    distributed.shutdown(group)
    return results


def _evaluate(model, split: dict[str, torch.Tensor], seed: int, device: torch.device) -> dict[str, float]:
    model.eval()
    with _separate_rng(seed):
        out = model.evaluate({k: v.to(device) for k, v in split.items()})
    model.train()
    return {k: float(v) for k, v in out.items()}
