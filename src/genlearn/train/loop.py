"""The one training loop, for every family: the model owns `train_step`, the loop owns the rest.

The rest is: seeding, data order, learning-rate schedule, progress bar, validation, metrics.jsonl
and TensorBoard, atomic checkpoints every `checkpoint_every` seconds, Ctrl-C (checkpoint and exit),
NaN/Inf detection (stop; the last good checkpoint stays), resume, and data parallelism under
torchrun. The data set makes each batch (a dict: images, binarized afresh for binary models, and
conditions such as labels); the loop moves its tensors to the device and takes this rank's rows.

`fit` reads top to bottom: set up the run (`_setup`), start it fresh or resume it (`_start`),
then for every step: the batch, the lr, the model's update, a NaN check, the log window
(`_Log`), the checkpoint (`_Checkpoints`); at the end of each epoch the validation; and finally
the test evaluation and the pictures (`_finish`).

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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from genlearn import __version__, files, memory, runs
from genlearn import config as cfg
from genlearn import data as datasets
from genlearn.errors import Interrupted, TrainingError, UserError
from genlearn.train import checkpoint, distributed


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) alone, so resuming recomputes it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def lr_factor(config: Any, step: int, progress: float) -> float:
    """The lr at `step` as a fraction of `config.lr`: constant; cosine from 1 to `lr_final` as
    `progress` runs from 0 to 1; or exponential, divided by `lr_decay` every step down to a floor
    of `lr_final` (the GAN paper's per-iteration decay)."""
    if config.lr_schedule == "cosine":
        final = config.lr_final
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if config.lr_schedule == "exponential":
        return max(config.lr_decay**-step, config.lr_final)
    return 1.0


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


# ------------------------------------------------------------------------------------------------
# The run's fixed parts and its counters


@dataclass
class _Run:
    """What stays fixed through a run: where, on what, how long."""

    model: Any
    config: Any
    run_dir: Path
    name: str
    device: torch.device
    group: distributed.Group
    data: Any
    binary: bool
    steps_per_epoch: int
    progress: bool
    held_out: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.group.is_main

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @property
    def rows(self) -> slice:
        """This rank's rows of every global batch."""
        local = self.config.batch_size // self.group.world
        return slice(self.group.rank * local, (self.group.rank + 1) * local)


@dataclass
class _Counters:
    """Where the run is; saved in every checkpoint (with the optimisers and RNG states)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # the next batch within the epoch
    elapsed: float = 0.0  # seconds of training steps
    data_gen: torch.Generator = field(default_factory=torch.Generator)


def _setup(model, config, run_dir, name, progress: bool, data) -> _Run:
    """Device, process group, data set and epoch length; the model moved to the device and
    prepared from the data (a resumed run then loads its checkpoint over that)."""
    device = cfg.resolve_device(config.device)
    group = distributed.init(device)
    if config.batch_size % group.world:
        raise UserError(f"batch_size {config.batch_size} must divide evenly over {group.world} ranks")
    model.to(device)  # initial weights were drawn from config.seed (registry.instantiate)
    memory.check_training_memory(model, name, device)  # before the first step allocates the rest
    data = data or datasets.load(config)
    datasets.check_fits(model, data, config.dataset)
    model.prepare(data, config.batch_size)
    steps_per_epoch = len(data) // config.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{len(data)} training images are fewer than one batch of {config.batch_size}")
    binary = model.data_kind == "binary"
    return _Run(model, config, Path(run_dir), name, device, group, data, binary, steps_per_epoch, progress)


def _start(run: _Run, resume: bool) -> tuple[_Counters, dict[str, Any], dict[str, Any]]:
    """Seed a fresh run in an empty directory, or load the checkpoint of the run in `run_dir`
    (refusing changed settings that define the run); only then write config.toml, and give every
    rank rank 0's weights. Returns the counters, the log window saved with them, and the results
    a resumed run had (whose metrics `genlearn eval` may have added)."""
    config, model = run.config, run.model
    counters = _Counters(data_gen=torch.Generator().manual_seed(config.seed + 7919))
    torch.manual_seed(config.seed * 1009 + run.group.rank + 1)  # model noise: distinct per rank
    window: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    if resume:
        runs.check_resumable(run.run_dir, config)
        previous = runs.results(run.run_dir)
        window = _resume(run, counters)
    elif run.main:
        runs.check_empty(run.run_dir)
    if run.main:
        runs.atomic_write(run.run_dir / runs.CONFIG_FILE, cfg.to_toml(config, run.name, __version__))
    distributed.barrier(run.group)
    for opt in model.optimizers.values():
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])
    distributed.synchronise(model, model.optimizers, run.group)
    return counters, window, previous


def _resume(run: _Run, counters: _Counters) -> dict[str, Any]:
    """Load weights, optimiser states, counters and RNG states from the run's checkpoint. The lr
    comes from the (possibly --set) config, not the checkpoint."""
    if run.main:  # finish a checkpoint a crash interrupted; the other ranks wait for it
        checkpoint.recover(run.run_dir)
    distributed.barrier(run.group)
    state = checkpoint.load_trainer(run.run_dir)
    runs.load_weights(run.run_dir, run.model)
    saved = state["optimizers"]
    if not isinstance(saved, dict) or set(saved) != set(run.model.optimizers):
        raise UserError(f"{run.run_dir / runs.TRAINER_FILE} holds the optimisers of another model")
    for key, opt in run.model.optimizers.items():
        fresh_lrs = [g["lr"] for g in opt.param_groups]
        try:
            opt.load_state_dict(saved[key])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{run.run_dir / runs.TRAINER_FILE} does not fit this model: {exc}") from None
        for g, lr in zip(opt.param_groups, fresh_lrs):
            g["initial_lr"] = lr
    counters.step, counters.epoch = state["step"], state["epoch"]
    counters.batch, counters.elapsed = state["batch"], state["elapsed"]
    counters.data_gen.set_state(state["data_rng"])
    if run.group.active:  # each rank's noise and chains continue from where they were
        _resume_rank(run, state)
    else:
        torch.set_rng_state(state["torch_rng"])
        if run.device.type == "cuda" and state["cuda_rng"].numel():
            torch.cuda.set_rng_state(state["cuda_rng"], run.device)
    return state.get("log_window", {})


def _resume_rank(run: _Run, state: dict[str, Any]) -> None:
    """Under torchrun: this rank's RNG state and local buffers from the checkpoint, which holds
    every rank's. A checkpoint of another number of ranks cannot continue each rank; its noise is
    then reseeded from the step (the run goes on, but not bit for bit)."""
    rank, world = run.group.rank, run.group.world
    rngs = state.get("rank_rngs")
    if rngs is None or len(rngs) != world:
        torch.manual_seed(run.config.seed * 1009 + rank + 1 + state["step"])
        return
    torch.set_rng_state(rngs[rank])
    cuda_rngs = state.get("rank_cuda_rngs") or []
    if run.device.type == "cuda" and len(cuda_rngs) == world:
        torch.cuda.set_rng_state(cuda_rngs[rank], run.device)
    buffers = dict(run.model.named_buffers())
    with torch.no_grad():
        for name, copies in state.get("rank_buffers", {}).items():
            buffers[name].copy_(copies[rank])


# ------------------------------------------------------------------------------------------------
# Logging and checkpoints


class _Log:
    """metrics.jsonl (one JSON object per line) and TensorBoard scalars, on the main rank only;
    the running sums of the current log window (saved with every checkpoint, so a resumed run
    logs the same lines as one that never stopped)."""

    def __init__(self, run: _Run, step: int, window: dict[str, Any]):
        self.enabled = run.main
        self.path = run.run_dir / runs.METRICS_FILE
        self._writer: Future | None = None
        if self.enabled and run.config.tensorboard:
            # TensorBoard's import takes most of a second: it runs beside the first steps, which
            # spend their time in torch kernels that release the GIL, and is waited for at the
            # first line logged.
            pool = ThreadPoolExecutor(1)
            self._writer = pool.submit(_tensorboard_writer, run.run_dir / "tensorboard")
            pool.shutdown(wait=False)
        self.steps, self.sums = window.get("steps", 0), dict(window.get("sums", {}))
        self.t0, self.images = time.perf_counter(), 0
        self._truncate_after(step)

    def _truncate_after(self, step: int) -> None:
        """On resume, forget lines logged after the checkpoint (they will be logged again)."""
        if not (self.enabled and files.lexists(self.path)):
            return
        keep = [r for r in runs.read_records(self.path) if r.get("step", 0) <= step]
        runs.atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def restart_clock(self) -> None:
        """The speed is measured over training steps: the clock restarts with every epoch."""
        self.t0, self.images = time.perf_counter(), 0

    def window(self) -> dict[str, Any]:
        return {"steps": self.steps, "sums": dict(self.sums)}

    def add(self, stats: dict[str, float], images: int) -> None:
        self.steps += 1
        self.images += images
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def flush(self, counters: _Counters, run: _Run, lr: float) -> dict[str, Any]:
        """One line of the window's means, the lr and the speed; then a new window."""
        rate = self.images / (time.perf_counter() - self.t0)
        record: dict[str, Any] = {
            "step": counters.step,
            "epoch": counters.epoch + counters.batch / run.steps_per_epoch,
        }
        record.update({k: v / self.steps for k, v in self.sums.items()})
        # the lr a model reports is the one it used (a stack's pretraining lr); else the loop's
        record.update({"lr": record.get("lr", lr), "samples_per_s": rate, "time": counters.elapsed})
        self.write(record)
        self.t0, self.images, self.steps, self.sums = time.perf_counter(), 0, 0, {}
        return record

    def write(self, record: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        files.append_text(self.path, json.dumps(record) + "\n")  # never through a link
        if self._writer is not None:
            writer = self._writer.result()
            for key, value in record.items():
                if key not in ("step", "epoch", "split", "time") and isinstance(value, (int, float)):
                    writer.add_scalar(f"{prefix}/{key}", value, record["step"])
            writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.result().close()


def _tensorboard_writer(directory: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(directory))


class _Checkpoints:
    """Snapshots of everything a checkpoint holds, written on the main rank.

    A periodic checkpoint is written only once the next step's loss, computed at its weights,
    came out finite: so the checkpoint a NaN leaves behind is one whose weights gave a finite
    loss. A fresh run's initial state is the first such checkpoint (the very first step checks
    its loss); a resumed run starts from a checkpoint already on disk."""

    def __init__(self, run: _Run):
        self.run = run
        self.pending: tuple | None = None
        self.last = time.monotonic()

    def snapshot(self, counters: _Counters, log: _Log) -> tuple | None:
        """A copy of the weights and trainer state, taken now, written later (main rank only).
        Under torchrun every rank takes part: the main rank gathers each rank's RNG state and
        its own buffers (persistent chains), so a resumed run continues every rank exactly."""
        run = self.run
        model = run.model
        rank_rngs = distributed.gather(torch.get_rng_state(), run.group)
        on_gpu = run.device.type == "cuda"
        rank_cuda = distributed.gather(torch.cuda.get_rng_state(run.device), run.group) if on_gpu else []
        local = {
            name: distributed.gather(buf, run.group)
            for name, buf in model.named_buffers()
            if name in model.local_buffers
        }
        if not run.main:
            return None
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        cuda = rank_cuda[0] if on_gpu else torch.empty(0, dtype=torch.uint8)
        state = {
            "log_window": log.window(),
            "step": counters.step,
            "epoch": counters.epoch,
            "batch": counters.batch,
            "elapsed": counters.elapsed,
            "optimizers": {k: opt.state_dict() for k, opt in model.optimizers.items()},
            "data_rng": counters.data_gen.get_state(),
            "torch_rng": rank_rngs[0],
            "cuda_rng": cuda,
        }
        if run.group.active:
            state["rank_rngs"] = rank_rngs
            state["rank_cuda_rngs"] = rank_cuda
            state["rank_buffers"] = {name: [t.cpu() for t in copies] for name, copies in local.items()}
        return weights, copy.deepcopy(state)

    def hold(self, counters: _Counters, log: _Log) -> None:
        """Take a snapshot, to be written once the next step's loss proves its weights good."""
        self.pending = self.snapshot(counters, log)
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.run.config.checkpoint_every

    def confirm(self) -> None:
        """The step after the held snapshot gave a finite loss: write the snapshot."""
        if self.pending is not None:
            checkpoint.save(self.run.run_dir, *self.pending)
        self.pending = None

    def save_now(self, counters: _Counters, log: _Log) -> runs.WeightsId | None:
        """Checkpoint the current state unless its weights are no longer finite; the identity of
        the weights written (None on the other ranks, or when nothing was written)."""
        snap = self.snapshot(counters, log)
        if snap is not None and all(t.isfinite().all() for t in snap[0].values() if t.is_floating_point()):
            return checkpoint.save(self.run.run_dir, *snap)
        return None


# ------------------------------------------------------------------------------------------------
# Training


def fit(
    model: Any,
    config: Any,
    run_dir: str | Path,
    name: str,
    resume: bool = False,
    progress: bool = True,
    data: Any = None,
) -> dict[str, Any]:
    """Train `model` as `config` says, writing the run directory; returns results.json's content."""
    run = _setup(model, config, run_dir, name, progress, data)
    with runs.locked(run.run_dir) if run.main else nullcontext(), _StopFlag() as stop:
        counters, window, previous = _start(run, resume)
        log = _Log(run, counters.step, window)
        ckpt = _Checkpoints(run)
        if not resume:
            ckpt.hold(counters, log)
        model.train()
        try:
            out_of_time = _train(run, counters, log, ckpt, stop)
        except TrainingError:
            if run.main and not (run.run_dir / runs.TRAINER_FILE).exists():
                # diverged before its first checkpoint: leave nothing a fresh run would refuse
                for name in (runs.CONFIG_FILE, runs.METRICS_FILE):
                    (run.run_dir / name).unlink(missing_ok=True)
            raise
        weights = ckpt.save_now(counters, log)
        if run.main:
            weights = weights or runs.weights_id(run.run_dir)  # the weights results.json describes
        results = _finish(run, counters, log, out_of_time, previous, stop, weights) if run.main else {}
        log.close()
    distributed.barrier(run.group)
    distributed.shutdown(run.group)
    return results


def _train(run: _Run, counters: _Counters, log: _Log, ckpt: _Checkpoints, stop: _StopFlag) -> bool:
    """Epochs of steps until `epochs` or the time limit; True when the time limit stopped it."""
    config = run.config
    while counters.epoch < config.epochs:
        order = epoch_order(config.seed, counters.epoch, len(run.data))
        bar = tqdm(
            total=run.steps_per_epoch,
            initial=counters.batch,
            desc=f"epoch {counters.epoch + 1}/{config.epochs}",
            disable=not (run.progress and run.main),
            leave=False,
            dynamic_ncols=True,
        )
        log.restart_clock()
        try:
            while counters.batch < run.steps_per_epoch:
                _step(run, counters, log, ckpt, bar, order)
                time_up = bool(config.time_limit) and counters.elapsed >= config.time_limit
                # the ranks agree on each, so that they stop and checkpoint at the same step
                stopping, due, time_up = distributed.any_ranks((stop.raised, ckpt.due(), time_up), run.group)
                if stopping:
                    ckpt.save_now(counters, log)
                    log.close()
                    distributed.shutdown(run.group)
                    raise Interrupted(counters.step)
                if due:
                    ckpt.hold(counters, log)
                if time_up:
                    # a wall-clock budget: stop mid-epoch, resumable from here
                    if run.progress and run.main:
                        tqdm.write(f"time limit of {config.time_limit:g} s reached at step {counters.step}")
                    return True
        finally:
            bar.close()
        counters.epoch += 1
        counters.batch = 0
        if config.eval_every and counters.epoch % config.eval_every == 0 and counters.epoch < config.epochs:
            _validate(run, counters, log)
        if distributed.any_rank(ckpt.due(), run.group):
            ckpt.hold(counters, log)
    return False


def _step(run: _Run, counters: _Counters, log: _Log, ckpt: _Checkpoints, bar, order: torch.Tensor) -> None:
    """One update: the batch, the lr, the model's step, a NaN check, the log window."""
    config, model = run.config, run.model
    t0 = time.perf_counter()
    idx = order[counters.batch * config.batch_size : (counters.batch + 1) * config.batch_size]
    batch = run.data.batch(idx, run.binary, counters.data_gen)
    batch = {k: v[run.rows].to(run.device, non_blocking=True) for k, v in batch.items()}
    factor = lr_factor(config, counters.step, model.schedule_progress(counters.step, run.total_steps))
    for opt in model.optimizers.values():
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * factor
    stats = model.train_step(batch)
    distributed.sync_buffers(model, run.group)
    bad = [k for k, v in stats.items() if not math.isfinite(v)]
    if bad:  # (the bar is closed by `_train`)
        log.close()
        kept = (run.run_dir / runs.TRAINER_FILE).exists()
        where = f"the last good checkpoint in {run.run_dir} is kept" if kept else "nothing was saved"
        raise TrainingError(
            f"{bad[0]} became {stats[bad[0]]} at step {counters.step + 1} (epoch {counters.epoch + 1}); "
            f"{where}; try a lower lr"
        )
    ckpt.confirm()  # its weights just gave a finite loss
    counters.step += 1
    counters.batch += 1
    counters.elapsed += time.perf_counter() - t0
    log.add(stats, config.batch_size)
    bar.update(1)
    if counters.step % config.log_every == 0:
        record = log.flush(counters, run, config.lr * factor)
        bar.set_postfix(
            {k: f"{v:.4g}" for k, v in record.items() if k in stats}
            | {"img/s": f"{record['samples_per_s']:.0f}"}
        )


def _validate(run: _Run, counters: _Counters, log: _Log) -> None:
    if not run.main:
        return
    record = {"step": counters.step, "epoch": counters.epoch, "split": "valid"}
    record.update(_evaluate(run, "valid"))
    log.write(record, prefix="valid")
    if run.progress:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "split"))
        tqdm.write(f"validation: {shown}")


def _evaluate(run: _Run, split: str) -> dict[str, float]:
    """The model's own held-out figures on `split`, and those of its samples that only the data
    set can give (mode counts), drawn from their own seed."""
    model = run.model
    if split not in run.held_out:  # made once: binarizing 10,000 images costs as much as scoring them
        run.held_out[split] = {k: v.to(run.device) for k, v in run.data.split(split, run.binary).items()}
    batch = run.held_out[split]
    model.eval()
    with _separate_rng(run.config.seed):
        out = model.evaluate(batch)
        out |= run.data.sample_stats(model)
    model.train()
    return {k: float(v) for k, v in out.items()}


def _same_weights(previous: dict[str, Any], weights: runs.WeightsId) -> bool:
    """Whether earlier results describe these very weights (by sha256; older results by step)."""
    try:
        runs.check_same_weights(previous, weights, "")
    except UserError:
        return False
    return True


def _part_key(key: str, part: str) -> str:
    """A figure's name on a further test part: nll_bound -> nll_bound_heldout, and its standard
    error nll_bound_stderr -> nll_bound_heldout_stderr (as `genlearn eval` names them)."""
    tag = part.removeprefix("test_")
    stem, stderr, _ = key.partition("_stderr")
    return f"{stem}_{tag}_stderr" if stderr else f"{key}_{tag}"


def _data_description(dataset: str, binary: bool) -> str:
    """What the test figures were computed on, e.g. "mnist-captions, binarized (fixed, seed 0)"."""
    if dataset in cfg.TOY_DATASETS:
        return f"{dataset}, 2-D points"
    return f"{dataset}, " + ("binarized (fixed, seed 0)" if binary else "intensities")


def _finish(
    run: _Run,
    counters: _Counters,
    log: _Log,
    out_of_time: bool,
    previous: dict[str, Any],
    stop: _StopFlag,
    weights: runs.WeightsId,
) -> dict[str, Any]:
    """Test figures and pictures, then results.json, written last: a run is finished when its
    results.json exists. A stop asked for meanwhile (Ctrl-C, SIGTERM) ends the run as interrupted
    between the two, and resuming it finishes it. results.json names the `weights` it describes
    (their step and sha256), so that `genlearn eval` files a figure only with the weights it was
    computed from. Metrics that `genlearn eval` added to the results of a resumed run are kept
    when the weights did not change, and kept apart as `earlier_metrics` (with the step they
    were computed at) when they did."""
    test = _evaluate(run, "test")
    for part in run.data.test_parts:  # e.g. held-out captions, reported apart: nll_bound_heldout
        test |= {_part_key(k, part): v for k, v in _evaluate(run, part).items()}
    if stop.raised:
        raise Interrupted(counters.step)
    with _separate_rng(run.config.seed):
        from genlearn.viz.figures import write_run_figures

        figures = write_run_figures(run.model, run.data, run.run_dir)
    if stop.raised:
        raise Interrupted(counters.step)
    results: dict[str, Any] = {
        "model": run.name,
        "split": "test",
        "data": _data_description(run.config.dataset, run.binary),
        "metrics": test,
        "seed": run.config.seed,
        "epochs": round(counters.epoch + counters.batch / run.steps_per_epoch, 4),
        "steps": counters.step,
        "weights": weights.as_json(),
        "stopped_by": "time_limit" if out_of_time else "epochs",
        "train_time_s": round(counters.elapsed, 2),
        "ranks": run.group.world,
        "device": str(run.device),
        "genlearn_version": __version__,
        "figures": figures,
    }
    added = {k: v for k, v in previous.get("metrics", {}).items() if k not in test}
    if added and _same_weights(previous, weights):
        results["metrics"] = test | added
    elif added:
        results["earlier_metrics"] = {"steps": previous.get("steps"), **added}
    log.write({"step": counters.step, "epoch": counters.epoch, "split": "test", **test}, prefix="test")
    runs.write_json(run.run_dir / runs.RESULTS_FILE, results)
    return results
