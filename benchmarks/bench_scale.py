"""Benchmark scaling out: the example story made by 1 and by 2 Ray workers, in panels per minute.

  python benchmarks/bench_scale.py                      # tiny models, this machine's CPUs
  python benchmarks/bench_scale.py --workers 1 2 4      # more worker counts (one per GPU at most)
  python benchmarks/bench_scale.py --model DIR --encoder DIR --tile 512 --steps 28   # real models

One local Ray instance is started first and shared by every measurement, so its start-up (about
ten seconds) is not counted; each measurement does count its workers' start (process, imports,
loading the models once, encoding the prompts), as a real run pays it. The same panels are also
made without Ray (in this process, all CPU threads) as the baseline. Every measurement writes a
fresh run folder, so no panel is kept from an earlier one.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--panels", default="1-8")
    parser.add_argument("--model", help="FLUX Fill folder (default: tiny random-weight test model)")
    parser.add_argument("--encoder", help="CLIP folder (default: tiny random-weight test model)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--no-local", action="store_true", help="skip the run without Ray")
    args = parser.parse_args()

    import ray
    import torch

    from ipprompt.pipeline.run import parse_panel_selection, run_story
    from ipprompt.testing import build_tiny_clip, build_tiny_flux_fill

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        model = args.model or str(build_tiny_flux_fill(work / "tiny-flux-fill"))
        encoder = args.encoder or str(build_tiny_clip(work / "tiny-clip"))
        shutil.copytree(REPO / "stories", work / "stories", ignore=shutil.ignore_patterns("index.sqlite*"))
        story = work / "stories" / "lighthouse.toml"
        opts = dict(panels=args.panels, model=model, encoder=encoder, tile=args.tile, steps=args.steps, candidates=args.candidates, rounds=args.rounds)
        n_panels = len(parse_panel_selection(args.panels, 10))
        # Index the theme once, so that no measurement pays for it.
        run_story(story, out=work / "warm", backend="preview", panels="1", encoder=encoder, tile=args.tile, candidates=1, rounds=0)

        rows: list[tuple[str, float]] = []
        if not args.no_local:
            started = time.perf_counter()
            run_story(story, out=work / "local", **opts)
            rows.append((f"no Ray (one process, {torch.get_num_threads()} threads)", time.perf_counter() - started))
            print(f"{rows[-1][0]}: {rows[-1][1]:.1f} s", flush=True)
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        cluster = ray.cluster_resources()
        for n in args.workers:
            started = time.perf_counter()
            run_story(story, out=work / f"ray-{n}", ray="auto", workers=n, **opts)
            rows.append((f"Ray, {n} worker(s)", time.perf_counter() - started))
            print(f"{rows[-1][0]}: {rows[-1][1]:.1f} s", flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cpus, gpus = int(cluster.get("CPU", 0)), int(cluster.get("GPU", 0))
    print()
    print(
        f"`python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}`".replace(" `", "`")
        + f" — {n_panels} panels, tile {args.tile}, {args.steps} steps, {args.candidates} candidates, {args.rounds} extra rounds; "
        f"{'tiny random-weight models' if not args.model else 'models ' + model}; {platform.machine()} {cpus} CPUs, {gpus} GPUs, "
        f"torch {torch.__version__}, ray {ray.__version__}, {datetime.now(timezone.utc):%Y-%m-%d}"
    )
    print()
    print("| run | seconds | panels/min | speed-up |")
    print("|---|---|---|---|")
    base = next((s for label, s in rows if label.startswith("Ray, 1 ")), rows[0][1])
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {n_panels * 60 / seconds:.1f} | {base / seconds:.2f}× |")


if __name__ == "__main__":
    main()
