"""Benchmark the manifest work per panel commit at 10, 100 and 500 panels (no model, no images).

A run folder is filled with N done panels whose entries are the size a default run writes (ten
candidates with their arrangements and scores, three elements with ten references each, the
settings), then one panel is committed again the way ``RunFolder.commit`` does it
(``update_panel``: that panel's record and the small index), and, for comparison, the whole-
manifest path (``update``: every record read, the index rewritten), which is what a commit cost
before the index. The work per commit must not grow with the number of panels.

  python benchmarks/bench_manifest.py                 # 10, 100, 500 panels
  python benchmarks/bench_manifest.py --panels 10 100 250 500 --repeat 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipprompt.runfolder.folder import RunFolder  # noqa: E402
from ipprompt.runfolder.manifest import (  # noqa: E402
    ArrangementEntry,
    CandidateEntry,
    CellEntry,
    ElementEntry,
    PanelEntry,
    RefEntry,
    RunManifest,
    Scores,
    write_manifest,
)


def panel_entry(n: int, candidates: int = 10, elements: int = 3, refs: int = 10) -> PanelEntry:
    """A done panel the size of a default run's (about 40 KB of JSON)."""
    sha = f"{n:08x}" * 8
    cells = [CellEntry(row=r, col=c, element=r % elements, sha256=sha, thumb=f"refs/{sha[:16]}.jpg", caption="a lighthouse at dusk") for r in range(3) for c in range(3)]
    scores = Scores(total=0.31, clip_t=0.28, clip_i=0.74, per_element=[0.7, 0.71, 0.72])
    cands = [
        CandidateEntry(
            index=i, round=i // 4, seed=1000 + n, arrangement=ArrangementEntry(order=list(range(9)), offsets=[0, 1, 2], cells=cells),
            grid=f"panels/{n:02d}/grid-{i}.jpg", image=f"panels/{n:02d}/cand-{i}.png", steps_run=28, finished=i < 2, pruned=i >= 2,
            preview_scores=scores, scores=scores if i < 2 else None, chosen=i == 0,
        )
        for i in range(candidates)
    ]
    els = [ElementEntry(kind="character", text="Mira, a keeper in a yellow raincoat", refs=[RefEntry(sha256=sha, caption="ref", score=0.5, file="a.jpg", thumb="refs/x.jpg")] * refs) for _ in range(elements)]
    return PanelEntry(
        number=n, status="done", prompt=f"Panel {n}: Mira climbs the stairs of the lighthouse.", caption="Night falls.", key=f"{n:064x}",
        text="Mira climbs the stairs, ink and watercolour", description="Mira climbs the stairs, ink and watercolour", seed=1000 + n,
        elements=els, mask=f"panels/{n:02d}/mask.png", candidates=cands, chosen=0, scorer_choice=0, image=f"panels/{n:02d}.png",
        settings={"steps": 28, "candidates": candidates, "tile": 512, "grid": 3, "guidance": 30.0}, nfe=120, seconds=31.5,
    )


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(count: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_manifest(root, RunManifest(panels=[panel_entry(n) for n in range(1, count + 1)]))
        folder = RunFolder(root)
        target = count // 2 or 1
        new = panel_entry(target).model_copy(update={"seconds": 42.0})
        tick = iter(range(10**6))
        commit = timed(lambda: folder.update_panel(target, lambda old: new.model_copy(update={"seconds": float(next(tick))})), repeat)
        read_one = timed(lambda: folder.read(full_panels=[target]), repeat)
        pending = new.model_copy(update={"status": "pending"})

        def one_panel() -> None:  # what a run does per made panel: read it, mark it pending, commit it
            folder.read(full_panels=[target])
            folder.update_panel(target, lambda old: pending)
            folder.update_panel(target, lambda old: new)

        per_panel = timed(one_panel, repeat)
        # Another process wrote the index last: this one parses it once (no cache to reuse).
        cold = timed(lambda: RunFolder(root).update_panel(target, lambda old: new.model_copy(update={"seconds": float(next(tick))})), repeat)
        whole = timed(lambda: folder.update(lambda m: m.set_panel(new.model_copy(update={"seconds": 43.0}))), max(1, repeat // 2))
        size = (root / "manifest.json").stat().st_size
        record = (root / "panels" / f"{target:02d}" / "panel.json").stat().st_size
    return {"panels": count, "commit_s": commit, "read_panel_s": read_one, "per_panel_s": per_panel, "cold_s": cold, "whole_update_s": whole, "index_kb": size / 1024, "record_kb": record / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| panels | commit one panel (update_panel) | same, index last written by another process | read one panel | all manifest work per made panel | whole-manifest update | manifest.json | one record |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in args.panels:
        r = measure(count, args.repeat)
        print(f"| {count} | {r['commit_s']:.3f} s | {r['cold_s']:.3f} s | {r['read_panel_s']:.3f} s | {r['per_panel_s']:.3f} s | {r['whole_update_s']:.2f} s | {r['index_kb']:.0f} KB | {r['record_kb']:.0f} KB |", flush=True)


if __name__ == "__main__":
    main()
