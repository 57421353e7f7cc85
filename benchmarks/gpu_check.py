"""One table of speed facts at the real FLUX.1-Fill-dev shapes: s/step eager, with ``--cache
fbcache``, compiled and fp8 at 1536² and 768²; a whole panel at each ``--budget`` preset with the σ
of each rung; written as markdown (and JSON) with the GPU name, NFE and peak memory.

Run through ``benchmarks/gpu_check.sh`` (which also runs the ``cuda``-marked tests). The full
transformer and VAE are built in memory on the GPU with random weights (speed and memory do not
depend on weight values; no checkpoint is needed); the text encoders are small stand-ins with the
real output widths (they run once per panel and are not what is timed). ``--panels fast-lora`` times
``--fast``'s schedule (its LoRA is fused into the weights, so it adds no time per step).

``--smoke`` runs the same code on the tiny test model on the CPU (or GPU) in under a minute.
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

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_panel import FLUX_FILL_TRANSFORMER, FLUX_VAE, make_refs, run_mode  # noqa: E402

from ipprompt.backends.factory import MachineOptions, resolve_device  # noqa: E402
from ipprompt.backends.flux_fill import FluxFillBackend  # noqa: E402
from ipprompt.dvp.grid import GridSpec  # noqa: E402
from ipprompt.dvp.search import PanelPrompt, SearchSettings  # noqa: E402
from ipprompt.dvp.scoring import Scorer  # noqa: E402


def full_pipeline_on(device: torch.device):
    """FluxFillPipeline with the real transformer and VAE shapes, random bf16 weights, on ``device``."""
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 directly: fp32 first would need 48 GB more
    try:
        return _build(device)
    finally:
        torch.set_default_dtype(default_dtype)


def _build(device: torch.device):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from ipprompt.testing import _word_tokenizer

    with torch.device(device):
        transformer = FluxTransformer2DModel(**FLUX_FILL_TRANSFORMER).to(torch.bfloat16)
        vae = AutoencoderKL(**FLUX_VAE).to(torch.bfloat16)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=1000, hidden_size=768, intermediate_size=512, num_attention_heads=12,
                                                    num_hidden_layers=1, max_position_embeddings=77, projection_dim=768)).to(torch.bfloat16)
        text_encoder_2 = T5EncoderModel(T5Config(vocab_size=1000, d_model=4096, d_kv=64, d_ff=1024, num_layers=1, num_heads=8,
                                                 relative_attention_num_buckets=8)).to(torch.bfloat16)
    with torch.no_grad():  # keep random activations finite in bf16 (values do not change the cost)
        for p in transformer.parameters():
            p.mul_(0.1)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxFillPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=_word_tokenizer(77, clip_style=True),
                            text_encoder_2=text_encoder_2, tokenizer_2=_word_tokenizer(512, clip_style=False), transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(backend: FluxFillBackend, spec: GridSpec, prompt: PanelPrompt, measure: int) -> tuple[float, float | None]:
    """Seconds per denoising step of one candidate (after 2 warm-up steps), and, with a cache, the
    share of steps whose last block really computed (None without a cache)."""
    from ipprompt.dvp.search import CandidateSearch

    search = CandidateSearch(backend, Scorer(None), spec, SearchSettings(steps=measure + 4, calibration="off"))
    handle = backend.start(search._job(search.first_round(prompt)[0], prompt))
    last = backend.pipe.transformer.single_transformer_blocks[-1].attn
    computed: list[int] = []
    hook = last.register_forward_hook(lambda *a: computed.append(1))
    try:
        backend.advance(handle, 2)
        _sync(backend.device)
        computed.clear()
        started = time.perf_counter()
        backend.advance(handle, measure)
        _sync(backend.device)
        seconds = (time.perf_counter() - started) / measure
    finally:
        hook.remove()
        backend.release(handle)
    return seconds, (len(computed) / measure if backend.sampler.cached else None)
def measure_print_pass(backend: FluxFillBackend, tile: int, settings, device: torch.device) -> list[dict]:
    """The print pass at 2x on a square, a wide and a tall panel of a ``tile`` px grid (random images)."""
    import numpy as np
    from PIL import Image

    from ipprompt.dvp.grid import shape_tile
    from ipprompt.upscale.flux_pass import run_pass

    backend.encode_texts(["a girl in a yellow raincoat climbs the lighthouse stairs"])
    rows = []
    rng = np.random.default_rng(0)
    for shape in ("square", "wide", "tall"):
        w, h = shape_tile(tile, shape)
        panel = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        out = run_pass(panel, settings, prompt="a girl in a yellow raincoat climbs the lighthouse stairs", seed=0, backend=backend)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rows.append({
            "shape": shape, "panel": f"{w}x{h}", "large": f"{out.image.width}x{out.image.height}", "tiles": len(out.tiles),
            "tile": "x".join(map(str, out.tiles[0].size)), "nfe": out.nfe, "seconds": out.seconds,
            "s_per_nfe": round(out.seconds / max(1, out.nfe), 4), "peak_gpu_gib": peak,
        })
        print(f"print pass 2x {shape:<6} {w}x{h} -> {out.image.width}x{out.image.height}: {len(out.tiles)} tile(s), "
              f"{out.nfe} NFE, {out.seconds:.2f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model, tiny canvases (CI, CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check.md")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled and fp8 rows")
    parser.add_argument("--measure", type=int, default=5, help="steps timed per s/step row")
    parser.add_argument("--panels", default="balanced,fast,thorough", help="whole-panel rows: budgets (and/or 'reference', 'fast-lora')")
    args = parser.parse_args()

    import ipprompt.backends.flux_fill as flux_fill
    from ipprompt.dvp.rungs import BUDGETS

    device = resolve_device(args.device)
    rows: list[dict] = []

    def add(kind: str, canvas: int, mode: str, **values) -> None:
        rows.append({"kind": kind, "canvas": canvas, "mode": mode, **values})
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        from ipprompt.encoders.clip import ClipEncoder
        from ipprompt.testing import build_tiny_clip, build_tiny_flux_fill

        encoder = ClipEncoder.load(str(build_tiny_clip(tmp_path / "clip")), device=str(device))

        def new_backend() -> FluxFillBackend:
            if args.smoke:
                return FluxFillBackend.load(str(build_tiny_flux_fill(tmp_path / f"flux-{len(rows)}")), MachineOptions(device=str(device)))
            started = time.perf_counter()
            pipe = full_pipeline_on(device)
            print(f"built the full-size pipeline on {device} in {time.perf_counter() - started:.0f}s", flush=True)
            return FluxFillBackend(pipe, "random-weights FLUX.1-Fill-dev shapes", MachineOptions(device=str(device)), device, torch.bfloat16)

        if args.smoke and device.type == "cpu":
            flux_fill.COMPILE_BACKEND = "aot_eager"  # graph capture without a C++ build
        tiles = (64, 32) if args.smoke else (512, 256)  # canvases 1536² and 768² (smoke: 192² and 96²)
        specs = {3 * t: GridSpec(3, t) for t in tiles}
        refs = make_refs(tmp_path, 3, 9, min(tiles[0], 512))
        prompt = PanelPrompt("a girl in a yellow raincoat climbs the lighthouse stairs", ("girl", "lighthouse", "stairs"), refs, (), seed=0)
        backend = new_backend()

        def step_rows(mode: str) -> None:
            for canvas, spec in specs.items():
                seconds, computed = seconds_per_step(backend, spec, prompt, args.measure)
                add("s/step", canvas, mode, s_per_step=round(seconds, 4), blocks_computed=computed)

        # 1. s/step eager and with the First Block Cache.
        step_rows("eager")
        backend.sampler.cached = bool(flux_fill._enable_cache(backend.pipe.transformer, "fbcache"))
        step_rows("fbcache 0.08")
        backend.pipe.transformer.disable_cache()
        backend.sampler.cached = False
        # 2. whole panels at each budget, eager, at 1536², and the σ of each rung (from this model's scheduler).
        canvas, spec = next(iter(specs.items()))
        for name in [p for p in args.panels.split(",") if p]:
            if name == "reference":
                settings = SearchSettings(method="reference", steps=50, calibration="off")
            elif name == "fast-lora":  # --fast's schedule (its LoRA is fused: same cost per step)
                settings = SearchSettings(steps=8, rounds=0, calibration="off")
            else:
                b = BUDGETS[name]
                settings = SearchSettings(steps=b.steps, candidates=b.candidates, rounds=b.rounds, refine=b.refine, finish=b.finish,
                                          budget=name, calibration="off")
            if args.smoke:
                settings = SearchSettings(**{**settings.__dict__, "steps": min(settings.steps, 8)})
            row = run_mode(backend, Scorer(encoder), spec, settings, prompt)
            rungs = ", ".join(f"step {k} σ {sigma:.3f}" for k, sigma in row["rungs"]) or "none (every candidate to the end)"
            add("panel", canvas, f"{name}, eager", steps=settings.steps, nfe=row["nfe"], s_per_panel=row["seconds"],
                rungs=rungs, finished=row["finished"], peak_gpu_gib=row["peak_gpu_gib"])
        # 3. the print pass (ipprompt.upscale) at 2x: eager, before compile changes the transformer.
        from ipprompt.upscale.pass_result import PassSettings

        if args.smoke:  # same code, tiles small enough that every panel is split
            pass_settings = PassSettings(factor=2, strength=0.5, tile=96, overlap=16, upscaler=None, steps=4, guidance=30.0)
        else:
            pass_settings = PassSettings(factor=2, strength=0.35, tile=1024, overlap=128, upscaler=None, steps=28, guidance=30.0)
        pass_rows = measure_print_pass(backend, spec.tile, pass_settings, device)
        # 4. compiled (regional), then fp8 (a fresh transformer: quantized before it is compiled).
        if not args.no_compile:
            options = MachineOptions(device=str(device), compile=True)
            backend.options = options
            backend.applied["compiled"] = flux_fill._compile(backend.pipe.transformer, options)
            for spec_ in specs.values():  # compile warm-up for each canvas
                warm = time.perf_counter()
                seconds_per_step(backend, spec_, prompt, 1)
                print(f"compile warm-up at {spec_.size}²: {time.perf_counter() - warm:.0f}s", flush=True)
            step_rows("compiled")
            del backend
            if device.type == "cuda":
                torch.cuda.empty_cache()
            backend = new_backend()
            from ipprompt.backends.factory import fp8_kind

            kind, why = fp8_kind(device)
            if kind == "torchao":
                from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

                quantize_(backend.pipe.transformer, Float8DynamicActivationFloat8WeightConfig())
                options = MachineOptions(device=str(device), compile=True, quantize="fp8")
                backend.applied["compiled"] = flux_fill._compile(backend.pipe.transformer, options)
                for spec_ in specs.values():
                    seconds_per_step(backend, spec_, prompt, 1)
                step_rows("fp8 (torchao) compiled")
            else:
                backend.pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=backend.dtype)
                step_rows("fp8 storage (layerwise), eager")
                print(f"fp8: {why}", flush=True)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    import diffusers

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    title = "Smoke (tiny model)" if args.smoke else "FLUX.1-Fill-dev shapes, random weights, bf16"
    lines = [
        f"### {title}: {gpu}",
        "",
        f"`benchmarks/gpu_check.sh{' --smoke' if args.smoke else ''}`, {stamp}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"3 elements. s/step: one candidate, {args.measure} steps after 2 warm-up steps; fbcache: `--cache fbcache` (threshold 0.08), "
        "'blocks' = share of steps whose last block computed. panel: a whole panel at a `--budget` preset, eager, with the "
        "σ of each rung read from this model's scheduler.",
        "",
        "| row | canvas | mode | s/step | blocks | steps | NFE | s/panel | rungs (step, σ) | finished | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: object, fmt: str = "") -> str:
        return "–" if v is None else format(v, fmt)

    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['canvas']}² | {r['mode']} | {f(r.get('s_per_step'), '.4f')} | {f(r.get('blocks_computed'), '.2f')} | "
            f"{f(r.get('steps'))} | {f(r.get('nfe'))} | {f(r.get('s_per_panel'), '.2f')} | {r.get('rungs', '–')} | "
            f"{f(r.get('finished'))} | {f(r.get('peak_gpu_gib'), '.1f')} |"
        )
    lines += [
        "",
        f"Print pass (`--upscale 2`, strength {pass_settings.strength:g}, {pass_settings.steps} steps, tiles of at most "
        f"{pass_settings.tile} px, overlap {pass_settings.overlap}), eager, on a panel of a {spec.tile} px grid:",
        "",
        "| shape | panel | large | tiles | tile | NFE | s/pass | s/NFE | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in pass_rows:
        lines.append(f"| {r['shape']} | {r['panel']} | {r['large']} | {r['tiles']} | {r['tile']} | {r['nfe']} | "
                     f"{r['seconds']:.2f} | {r['s_per_nfe']:.4f} | {f(r['peak_gpu_gib'], '.1f')} |")
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps({"gpu": gpu, "date": stamp, "rows": rows, "print_pass": pass_rows}, indent=2) + "\n")
    print("\n" + table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
