"""CPU threads change pixels: the panel key says how many a CPU run computes with.

On the CPU, PyTorch splits reductions (matrix products, convolutions, norms) over its intra-op
threads, and the order of a float sum changes its last bits; over a denoising loop those bits grow
into different pixels (on the tiny models a CLIP score difference of 4e-5 from the thread count
alone flipped which arrangement was finished). So a CPU run records its thread count in the panel
key, and a Ray worker on the CPU computes with the same count as the local run it stands in for
(Ray starts workers with ``OMP_NUM_THREADS=1`` unless told otherwise). GPU kernels do not depend on
the host's thread count.
"""

from __future__ import annotations

from typing import Any


def cpu_threads_key(backend: str, device_type: str | None) -> dict[str, Any]:
    """``{"cpu_threads": n}`` for a generator computing on the CPU (joins the panel key), else {}."""
    from ipprompt.backends.registry import runs_no_model

    if runs_no_model(backend) or device_type != "cpu":
        return {}
    import torch

    return {"cpu_threads": int(torch.get_num_threads())}


def use_job_threads(machine_key: dict[str, Any]) -> None:
    """In a worker: compute with the thread count the job was planned with (a CPU job only)."""
    threads = machine_key.get("cpu_threads")
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(int(threads))
