"""Benchmark one panel: exhaustive (DVP without pruning) vs the default pruned DVP search.

Reports transformer evaluations (NFE), seconds per panel, peak GPU memory, and host time per
candidate (everything but the transformer: canvases, previews and decodes, scoring, and writing the
inspection files the way a run does) for each search mode on the same references, seed and
settings, and whether both chose the same pixels. Search settings are the code's own defaults
unless given, so the same script measures an older checkout too (run it with that checkout first
on PYTHONPATH).

  python benchmarks/bench_panel.py --size tiny             # test models on the CPU (< 2 min)
  python benchmarks/bench_panel.py --size full             # real FLUX.1-Fill-dev shapes, random weights, GPU

``--size full`` builds the real FLUX.1-Fill-dev transformer and VAE architectures with random
weights (speed and memory do not depend on weight values, and no checkpoint is needed). The text
encoders run once per panel, so small stand-ins with the real output widths are used for them
(CLIP-L pooled 768, T5 4096); they are not part of the per-step cost being measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipprompt.backends.factory import MachineOptions
from ipprompt.backends.flux_fill import FluxFillBackend  # noqa: E402
from ipprompt.dvp.grid import GridSpec, RefImage  # noqa: E402
from ipprompt.dvp.search import CandidateSearch, PanelPrompt, SearchSettings  # noqa: E402
from ipprompt.dvp.scoring import Scorer  # noqa: E402

FLUX_FILL_TRANSFORMER = dict(
    patch_size=1, in_channels=384, out_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
FLUX_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
)


def build_full_pipeline(folder: Path, blocks: tuple[int, int] | None) -> Path:
    """Save a FluxFillPipeline with the real transformer/VAE shapes and random weights."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from ipprompt.testing import _word_tokenizer  # offline tokenizers

    config = dict(FLUX_FILL_TRANSFORMER)
    if blocks:
        config["num_layers"], config["num_single_layers"] = blocks
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(**config).to(torch.bfloat16)
    vae = AutoencoderKL(**FLUX_VAE).to(torch.bfloat16)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=1000, hidden_size=768, intermediate_size=512, num_attention_heads=12,
                                                num_hidden_layers=1, max_position_embeddings=77, projection_dim=768)).to(torch.bfloat16)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=1000, d_model=4096, d_kv=64, d_ff=1024, num_layers=1, num_heads=8,
                                             relative_attention_num_buckets=8)).to(torch.bfloat16)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxFillPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=_word_tokenizer(77, clip_style=True),
                            text_encoder_2=text_encoder_2, tokenizer_2=_word_tokenizer(512, clip_style=False), transformer=transformer)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_refs(folder: Path, elements: int, per_element: int, size: int) -> tuple[tuple[RefImage, ...], ...]:
    rng = np.random.default_rng(0)
    ranked = []
    for e in range(elements):
        refs = []
        for i in range(per_element):
            path = folder / f"ref-{e}-{i}.png"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
            refs.append(RefImage(f"{e:02d}{i:02d}".ljust(64, "0"), path, f"ref {e}/{i}", 1 - i / 20))
        ranked.append(tuple(refs))
    return tuple(ranked)


class TransformerClock:
    """Wall time spent inside the transformer's forward (synchronised on CUDA)."""

    def __init__(self, transformer: torch.nn.Module, cuda: bool) -> None:
        self.seconds = 0.0
        self._t0 = 0.0
        self.cuda = cuda
        self.handles = [transformer.register_forward_pre_hook(self._pre), transformer.register_forward_hook(self._post)]

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _pre(self, *args: object) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _post(self, *args: object) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._t0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def commit_like_a_run(result, spec: GridSpec, prompt: PanelPrompt, settings: SearchSettings, folder: Path) -> tuple[float, float]:
    """Write the panel's inspection files through the run folder, as the local runner does.

    Returns (seconds the next panel waits, seconds of writing in all): with a background writer
    the wait is only handing the result over.
    """
    from ipprompt.story.elements import Element
    from ipprompt.pipeline.execute import PanelResult
    from ipprompt.pipeline.plan import Overlay, PanelJob
    from ipprompt.runfolder.folder import RunFolder
    from ipprompt.story.loading import Generation

    fields = {k: getattr(settings, k) for k in ("candidates", "rounds", "steps", "search", "finish", "refine") if hasattr(settings, k)}
    # Not validated: smoke runs use canvases below the story schema's minimum tile.
    gen = Generation.model_construct(**{**Generation().model_dump(), "tile": spec.tile, "grid": spec.grid, **fields})
    job = PanelJob(number=1, text=prompt.text, description=prompt.text, elements=tuple(Element("action", t) for t in prompt.element_texts),
                   ranked=prompt.ranked, pinned=(), seed=prompt.seed, reroll=0, settings=gen, machine_key={},
                   overlay=Overlay(prompt.text, None, (), (), None))
    run = RunFolder(folder)
    panel = PanelResult(job, result, 0.0, None, {})
    started = time.perf_counter()
    if hasattr(run, "commit_async"):
        run.commit_async(panel)
        waited = time.perf_counter() - started
        run.flush()
    else:
        run.commit(panel)
        waited = time.perf_counter() - started
    return waited, time.perf_counter() - started


def run_mode(backend: FluxFillBackend, scorer: Scorer, spec: GridSpec, settings: SearchSettings, prompt: PanelPrompt, folder: Path | None = None) -> dict:
    cuda = backend.device.type == "cuda"
    device = backend.device if cuda else None
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    clock = TransformerClock(backend.pipe.transformer, cuda)
    started = time.perf_counter()
    try:
        from ipprompt.dvp.methods import method_of

        search = method_of(settings.method).search_class()(backend, scorer, spec, settings)
        result = search.run(prompt)
        if cuda:
            torch.cuda.synchronize(device)
    finally:
        clock.remove()
    seconds = time.perf_counter() - started
    waited = written = 0.0
    if folder is not None:
        waited, written = commit_like_a_run(result, spec, prompt, settings, folder)
    n = len(result.candidates)
    return {
        "search": settings.search,
        "nfe": result.nfe,
        "seconds": round(seconds, 3),
        "transformer_seconds": round(clock.seconds, 3),
        "host_s_per_candidate": round((seconds - clock.seconds + waited) / n, 4),
        "write_seconds_total": round(written, 3),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "candidates": len(result.candidates),
        "finished": sum(c.finished for c in result.candidates),
        "rounds_run": result.rounds_run,
        "chosen": result.chosen,
        "rungs": [(r["step"], r["sigma"]) for r in result.rungs],
        "image": np.array(result.image),
    }


def time_previews(backend: FluxFillBackend, spec: GridSpec, prompt: PanelPrompt, repeat: int = 5) -> dict:
    """Host time of one preview: the whole-canvas decode ipprompt does against the cell-slice decode
    it used to do (rebuilt here only to be timed), and how far the slice's pixels were off."""
    from ipprompt.dvp.scoring import Scorer as _Scorer

    search = CandidateSearch(backend, _Scorer(None), spec, SearchSettings(steps=8, calibration="off"))
    handle = backend.start(search._job(search.first_round(prompt)[0], prompt))
    backend.advance(handle, 4)
    sampler, state, pipe = backend.sampler, handle.state, backend.pipe

    def cell_slice():
        sigma = state.scheduler.sigmas[state.scheduler.step_index]
        z = sampler._unpack(state.latents - sigma * state.last_velocity, state)
        left, top, right, bottom = spec.box(spec.target)
        k = pipe.vae_scale_factor
        with torch.inference_mode():
            image = pipe.vae.decode(z[:, :, top // k: bottom // k, left // k: right // k], return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pil")[0]

    def timed(fn):
        fn()
        started = time.perf_counter()
        for _ in range(repeat):
            out = fn()
        return (time.perf_counter() - started) / repeat, out

    canvas_s, full = timed(lambda: backend.preview(handle))
    cell_s, piece = timed(cell_slice)
    diff = np.abs(np.asarray(full, dtype=np.int16) - np.asarray(piece, dtype=np.int16)).mean(axis=2)
    border = np.ones_like(diff, dtype=bool)
    border[8:-8, 8:-8] = False
    settings = SearchSettings(calibration="off")
    schedule = search.schedule if search.schedule.rungs else None
    n = settings.arrangements(6)
    previews = sum([n, *(schedule.survivors(n)[:-1] if schedule else [])])
    return {
        "canvas_s": round(canvas_s, 4), "cell_s": round(cell_s, 4), "extra_s": round(canvas_s - cell_s, 4),
        "slice_mean_diff": round(float(diff.mean()), 2), "slice_border_diff": round(float(diff[border].mean()), 2),
        "previews_per_panel": previews, "extra_s_per_panel": round(previews * (canvas_s - cell_s), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=None, help="px per cell [tiny: 128, full: 512]")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=None, help="[the code's default]")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--finish", type=int, default=None, help="candidates the last rung keeps [the code's default]")
    parser.add_argument("--budget", choices=("fast", "balanced", "thorough"), default=None, help="a --budget preset's search size")
    parser.add_argument("--preview-cost", action="store_true",
                        help="also time one preview: the whole-canvas decode (what ipprompt does) against decoding only the "
                             "target cell's latent slice (what it did before; shown for the extra host time only)")
    parser.add_argument("--refine", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="refinement rounds [the code's default]")
    parser.add_argument("--modes", default="exhaustive,pruned",
                        help="comma-separated: exhaustive, pruned, reference (the reference method's budget: every "
                             "first-round arrangement finished, no refinement)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the median by host time is reported")
    parser.add_argument("--fast", action="store_true", help="--fast's step settings (8 steps); with --lora, its LoRA too")
    parser.add_argument("--lora", action="append", default=[], help="LoRA to fuse (ID_OR_PATH[:SCALE]); repeatable")
    parser.add_argument("--elements", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--offload", default="none", choices=("none", "model", "sequential"))
    parser.add_argument("--quantize", default="none", choices=("none", "fp8", "nf4"))
    parser.add_argument("--blocks", type=int, nargs=2, metavar=("DOUBLE", "SINGLE"), help="full size with fewer blocks (smoke test)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/bench_panel.json"))
    args = parser.parse_args()

    tile = args.tile or (128 if args.size == "tiny" else 512)
    spec = GridSpec(args.grid, tile)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        from ipprompt.encoders.clip import ClipEncoder
        from ipprompt.testing import build_tiny_clip, build_tiny_flux_fill

        if args.size == "tiny":
            model = build_tiny_flux_fill(tmp_path / "flux")
        else:
            model = build_full_pipeline(tmp_path / "flux", tuple(args.blocks) if args.blocks else None)
        encoder = ClipEncoder.load(str(build_tiny_clip(tmp_path / "clip")), device="cpu")
        machine = MachineOptions(device=args.device, offload=args.offload, quantize=args.quantize, compile=args.compile)
        backend = FluxFillBackend.load(str(model), machine, loras=args.lora) if args.lora else FluxFillBackend.load(str(model), machine)
        refs = make_refs(tmp_path, args.elements, 9, min(tile, 512))
        prompt = PanelPrompt("a girl in a yellow raincoat climbs the lighthouse stairs",
                             tuple(f"element {i}" for i in range(args.elements)), refs, (), seed=0)
        if args.fast:
            from ipprompt.story.loading import FAST_DEFAULTS

            args.steps = args.steps or FAST_DEFAULTS["steps"]
            args.rounds = args.rounds if args.rounds is not None else FAST_DEFAULTS.get("rounds")
        given = dict(candidates=args.candidates, rounds=args.rounds, steps=args.steps, finish=args.finish, refine=args.refine)
        if args.budget:
            from ipprompt.dvp.rungs import BUDGETS

            preset = BUDGETS[args.budget]
            given = {k: v if v is not None else getattr(preset, k) for k, v in given.items()}
            given["budget"] = args.budget
        fields = SearchSettings.__dataclass_fields__
        base = {k: v for k, v in given.items() if v is not None and k in fields}
        base = {k: getattr(SearchSettings(**base), k) for k in ("candidates", "rounds", "steps", "finish", "refine", "budget") if k in fields}
        if args.preview_cost:
            preview_cost = time_previews(backend, spec, prompt)
        # Warm-up (first calls, thread pools, compile) so that one-off costs are not counted.
        run_mode(backend, Scorer(encoder), spec, SearchSettings(**{**base, "candidates": 1, "rounds": 0, "steps": 2}, search="exhaustive"), prompt)
        def settings_for(mode: str) -> SearchSettings:
            if mode == "reference":  # stand-in until --method reference lands: 6 x steps, no refinement
                return SearchSettings(**{**base, "rounds": 0}, search="exhaustive")
            return SearchSettings(**base, search=mode)

        rows = []
        for mode in args.modes.split(","):
            # The median of --repeat runs by host time (shared machines are noisy).
            tries = [run_mode(backend, Scorer(encoder), spec, settings_for(mode), prompt, tmp_path / f"run-{mode}-{i}") for i in range(args.repeat)]
            row = sorted(tries, key=lambda r: r["host_s_per_candidate"])[len(tries) // 2]
            row["search"] = mode
            row["host_s_per_candidate_all"] = [r["host_s_per_candidate"] for r in tries]
            rows.append(row)

    ex, pr = rows[0], rows[-1]
    images = [r.pop("image") for r in rows]
    same = bool(np.array_equal(images[0], images[-1]))
    device = torch.cuda.get_device_name(0) if backend.device.type == "cuda" else platform.processor() or "cpu"
    report = {
        "preview_cost": preview_cost if args.preview_cost else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": args.size, "device": device, "torch": torch.__version__,
        "canvas": spec.size, "settings": {**base, "compile": args.compile, "offload": args.offload, "quantize": args.quantize},
        "results": rows, "same_pixels": same, "nfe_ratio": round(pr["nfe"] / ex["nfe"], 3), "speedup": round(ex["seconds"] / pr["seconds"], 2),
    }
    print(f"\nOne panel, {args.size} model on {device}, canvas {spec.size}px, settings {base}")
    print(f"{'search':<11} {'NFE':>5} {'s/panel':>9} {'host s/cand':>12} {'writes s':>9} {'peak GPU':>9} {'cands':>6} {'finished':>9} {'chosen':>7}")
    for r in rows:
        peak = f"{r['peak_gpu_gib']:.1f}G" if r["peak_gpu_gib"] is not None else "-"
        print(f"{r['search']:<11} {r['nfe']:>5} {r['seconds']:>9.2f} {r['host_s_per_candidate']:>12.4f} {r['write_seconds_total']:>9.2f} {peak:>9} "
              f"{r['candidates']:>6} {r['finished']:>9} {r['chosen']:>7}")
    print(f"pruned/exhaustive NFE: {report['nfe_ratio']}, speed-up: {report['speedup']}x, same chosen pixels: {same}")
    if args.preview_cost:
        c = preview_cost
        print(f"one preview: whole canvas {c['canvas_s']:.4f} s, cell slice {c['cell_s']:.4f} s (+{c['extra_s']:.4f} s); "
              f"cell slice vs crop of the full decode: mean {c['slice_mean_diff']:.1f}, border {c['slice_border_diff']:.1f} levels; "
              f"previews per panel at these settings: {c['previews_per_panel']} -> +{c['extra_s_per_panel']:.3f} s/panel")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
