"""Device and thread policy of a worker process: CUDA when present, else CPU threads.

One worker process uses one device. On CPU the worker's torch intra-op thread pool is sized to
the worker's Dask thread count (``threads_per_worker``), so ``n_workers * threads_per_worker``
never oversubscribes the cores. Library code never sets ``CUDA_VISIBLE_DEVICES``: on a GPU
cluster dask-cuda pins one GPU per worker process and the worker simply uses ``cuda`` (its only
visible device).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def cuda_count() -> int:
    """Number of CUDA devices visible to this process (0 without a CUDA build of torch)."""
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except RuntimeError:  # broken driver: behave as CPU-only
        return 0


def pick_device(prefer: str = "auto") -> torch.device:
    """The device this process computes on.

    Parameters
    ----------
    prefer
        ``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ConfigError
        If ``prefer`` is unknown, or ``"cuda"`` is asked for where no GPU is visible.
    """
    if prefer not in DEVICES:
        raise ConfigError("Unknown device.", expected=" or ".join(DEVICES), got=repr(prefer))
    if prefer == "cpu":
        return torch.device("cpu")
    if cuda_count() > 0:
        return torch.device("cuda", torch.cuda.current_device())
    if prefer == "cuda":
        raise ConfigError(
            "A CUDA device was requested but none is visible.",
            expected="torch.cuda.is_available() == True",
            got="no CUDA device",
            fix="use --device auto (or cpu), or install a CUDA build of torch on a GPU machine.",
        )
    return torch.device("cpu")


@dataclass(frozen=True, kw_only=True)
class ThreadPolicy:
    """How many torch threads a worker process uses.

    Attributes
    ----------
    intra_op
        ``torch.set_num_threads`` (the worker's Dask thread count on CPU).
    interop
        ``torch.set_num_interop_threads`` (1: Dask already runs tasks concurrently).
    """

    intra_op: int = 1
    interop: int = 1

    def __post_init__(self) -> None:
        if self.intra_op < 1 or self.interop < 1:
            raise ConfigError("Thread counts must be >= 1.", got=(self.intra_op, self.interop))

    def apply(self) -> None:
        """Set torch's thread pools in this process (the inter-op pool only if still unset)."""
        torch.set_num_threads(self.intra_op)
        with contextlib.suppress(RuntimeError):  # can be set once, before any parallel work
            torch.set_num_interop_threads(self.interop)
        log.debug("torch threads: intra-op %d, inter-op %d", self.intra_op, self.interop)


def threads_for_worker(nthreads: int | None) -> ThreadPolicy:
    """Thread policy for a worker with ``nthreads`` Dask threads (``None``: all cores)."""
    n = nthreads if nthreads and nthreads > 0 else (os.cpu_count() or 1)
    return ThreadPolicy(intra_op=n, interop=1)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """Mixed precision (bfloat16/float16 autocast) on CUDA when ``enabled``; a no-op on CPU."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


@contextlib.contextmanager
def inference(device: torch.device, amp: bool = False) -> Iterator[None]:
    """``torch.inference_mode`` plus optional autocast: the context of every tile forward."""
    with torch.inference_mode(), autocast(device, amp):
        yield


def memory_format(device: torch.device) -> torch.memory_format:
    """``channels_last`` on CPU (faster oneDNN convolutions), contiguous on GPU."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def release(device: torch.device) -> None:
    """Give cached device memory back (after freeing models)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


__all__ = [
    "DEVICES",
    "ThreadPolicy",
    "autocast",
    "cuda_count",
    "inference",
    "memory_format",
    "pick_device",
    "release",
    "threads_for_worker",
]
