"""Data parallelism under `torchrun`: one process per rank, each reading its shard of every batch.

Models own their optimisers and their `train_step` (a GAN steps two of them, an RBM none by
backprop), so instead of wrapping the module in DistributedDataParallel we hook every optimiser:
just before `step()` the gradients are averaged over ranks with one all-reduce. That is DDP's
arithmetic (mean gradient of the global batch, identical weights on every rank) under any
`train_step`. Backend: gloo on CPU, nccl on GPU. Outside torchrun everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from genlearn.models.base import GenerativeModel


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device: torch.device) -> Group:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Group(rank=dist.get_rank(), world=dist.get_world_size())


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def _shared_buffers(model: GenerativeModel) -> list[torch.Tensor]:
    """The model's buffers that all ranks share: all but those named in `model.local_buffers`."""
    local = set(model.local_buffers)
    return [buf for name, buf in model.named_buffers() if name not in local]


def synchronise(model: GenerativeModel, optimizers: dict[str, torch.optim.Optimizer], group: Group) -> None:
    """Give every rank rank 0's weights and average gradients before each optimiser step.

    Parameters and buffers are broadcast from rank 0, except the buffers named in
    `model.local_buffers` (persistent Gibbs chains): each rank keeps its own, so that the ranks'
    chains are distinct samples of the model and the averaged negative phase uses all of them;
    copying rank 0's would leave one set of chains run `world` times. The chains need no per-rank
    start: the ranks' model noise is seeded per rank (`loop.fit`), so the chains part from the
    first Gibbs step even where every rank built them alike."""
    if not group.active:
        return
    for tensor in list(model.parameters()) + _shared_buffers(model):
        dist.broadcast(tensor.data, src=0)
    for opt in optimizers.values():
        params = [p for g in opt.param_groups for p in g["params"]]
        opt.register_step_pre_hook(lambda _opt, _args, _kw, ps=params: _average_gradients(ps, group.world))


def sync_buffers(model: GenerativeModel, group: Group) -> None:
    """After a step, give every rank the same buffers: float buffers (running statistics) are
    averaged over ranks, integer ones (counters) taken from rank 0. Statistics of a nonlinear kind
    (a running variance) then come from per-rank batches, as with DDP's buffers. The buffers named
    in `model.local_buffers` are left alone: persistent chains are each rank's own (see
    `synchronise`), and averaging or copying them would throw the other ranks' chains away."""
    if not group.active:
        return
    for buf in _shared_buffers(model):
        if buf.is_floating_point():
            dist.all_reduce(buf.data)
            buf.data /= group.world
        else:
            dist.broadcast(buf.data, src=0)


def _collective_device() -> torch.device:
    """Where a collective's tensors must live: the GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_ranks(flags: tuple[bool, ...], group: Group) -> tuple[bool, ...]:
    """Each flag OR-ed over the ranks, in one all-reduce: so that every rank stops, or
    checkpoints, at the same step."""
    if not group.active:
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=_collective_device())
    dist.all_reduce(t)
    return tuple(bool(v > 0) for v in t.tolist())


def gather(tensor: torch.Tensor, group: Group) -> list[torch.Tensor]:
    """Every rank's copy of `tensor` (same shape on every rank), in rank order, on every rank,
    returned on the tensor's own device (an RNG state on the CPU even under nccl)."""
    if not group.active:
        return [tensor.detach().clone()]
    moved = tensor.detach().to(_collective_device()).contiguous()
    out = [torch.empty_like(moved) for _ in range(group.world)]
    dist.all_gather(out, moved)
    return [t.to(tensor.device) for t in out]


def any_rank(flag: bool, group: Group) -> bool:
    """True when `flag` is set on any rank (so all ranks stop together)."""
    return any_ranks((flag,), group)[0]


def barrier(group: Group) -> None:
    if group.active:
        dist.barrier()


def shutdown(group: Group) -> None:
    if group.active and dist.is_initialized():
        dist.destroy_process_group()
