"""Time one panel at the real FLUX.1-Fill-dev shapes: reference budget, default DVP and --fast,
eager and compiled; write a markdown table (GPU name, s/panel, NFE, peak memory, host time).

Run through ``benchmarks/gpu_check.sh`` (which also runs the ``cuda``-marked tests). The full
transformer and VAE are built in memory on the GPU with random weights (speed and memory do not
depend on weight values; no checkpoint is needed); the text encoders are small stand-ins with the
real output widths (they run once per panel and are not what is timed). ``--fast`` is timed with
its step settings; its LoRA is fused into the weights, so it adds no time per step.

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
from ipprompt.story.loading import FAST_DEFAULTS  # noqa: E402


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
    parser.add_argument("--smoke", action="store_true", help="tiny model, tiny canvas (CI, CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check.md")
    parser.add_argument("--no-compile", action="store_true", help="eager rows only")
    parser.add_argument("--reference-compiled", action="store_true", help="also time the reference budget compiled (+100 s)")
    args = parser.parse_args()

    import ipprompt.backends.flux_fill as flux_fill

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        from ipprompt.encoders.clip import ClipEncoder
        from ipprompt.testing import build_tiny_clip, build_tiny_flux_fill

        encoder = ClipEncoder.load(str(build_tiny_clip(tmp_path / "clip")), device=str(device))
        if args.smoke:
            backend = FluxFillBackend.load(str(build_tiny_flux_fill(tmp_path / "flux")), MachineOptions(device=str(device)))
            spec = GridSpec(3, 64)
            if device.type == "cpu":
                flux_fill.COMPILE_BACKEND = "aot_eager"  # graph capture without a C++ build
        else:
            started = time.perf_counter()
            pipe = full_pipeline_on(device)
            backend = FluxFillBackend(pipe, "random-weights FLUX.1-Fill-dev shapes", MachineOptions(device=str(device)), device, torch.bfloat16)
            print(f"built the full-size pipeline on {device} in {time.perf_counter() - started:.0f}s", flush=True)
            spec = GridSpec(3, 512)
        refs = make_refs(tmp_path, 3, 9, min(spec.tile, 512))
        prompt = PanelPrompt("a girl in a yellow raincoat climbs the lighthouse stairs", ("girl", "lighthouse", "stairs"), refs, (), seed=0)
        default = SearchSettings()
        fast = SearchSettings(steps=FAST_DEFAULTS["steps"], preview_step=FAST_DEFAULTS["preview_step"])
        reference = SearchSettings(method="reference")  # IP-Prompter reproduced: every permutation, all steps
        if args.smoke:  # same code paths, a fraction of the steps
            default, fast, reference = SearchSettings(steps=8, preview_step=2), SearchSettings(steps=4, preview_step=1), SearchSettings(steps=8, method="reference")
        plans = [("reference", reference), ("default", default), ("fast", fast)]
        rows = []

        def measure(label: str, settings: SearchSettings, mode: str) -> None:
            row = run_mode(backend, Scorer(encoder), spec, settings, prompt, tmp_path / f"run-{label}-{mode}-{len(rows)}")
            row.pop("image", None)
            row.update(method=label, mode=mode, s_per_nfe=round(row["transformer_seconds"] / max(1, row["nfe"]), 4))
            rows.append(row)
            print(f"{label:<11} {mode:<9} {row['nfe']:>4} NFE {row['seconds']:>8.2f} s/panel", flush=True)

        # Warm-up: first kernel launches, allocator, CLIP, so that the first row is not charged for them.
        run_mode(backend, Scorer(encoder), spec, SearchSettings(candidates=1, rounds=0, steps=2, search="exhaustive"), prompt)
        for label, settings in plans:
            measure(label, settings, "eager")
        # The print pass (ipprompt.upscale) at 2x: eager, before compile changes the transformer.
        from ipprompt.upscale.pass_result import PassSettings

        if args.smoke:  # same code, tiles small enough that every panel is split
            pass_settings = PassSettings(factor=2, strength=0.5, tile=96, overlap=16, upscaler=None, steps=4, guidance=30.0)
        else:
            pass_settings = PassSettings(factor=2, strength=0.35, tile=1024, overlap=128, upscaler=None, steps=50, guidance=30.0)
        pass_rows = measure_print_pass(backend, spec.tile, pass_settings, device)
        if not args.no_compile:
            options = MachineOptions(device=str(device), compile=True)
            backend.options = options
            backend.applied["compiled"] = flux_fill._compile(backend.pipe.transformer, options)
            warm = time.perf_counter()
            run_mode(backend, Scorer(encoder), spec, SearchSettings(candidates=1, rounds=0, steps=2, search="exhaustive"), prompt)
            print(f"compile warm-up {time.perf_counter() - warm:.0f}s", flush=True)
            for label, settings in plans:
                if label.startswith("reference") and not args.reference_compiled and not args.smoke:
                    continue
                measure(label, settings, "compiled")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    import diffusers

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        f"### {'Smoke (tiny model)' if args.smoke else 'One panel at 1536² (FLUX.1-Fill-dev shapes, random weights, bf16)'}: {gpu}",
        "",
        f"`benchmarks/gpu_check.sh{' --smoke' if args.smoke else ''}`, {stamp}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"canvas {spec.size}², 3 elements. reference = `--method reference` (IP-Prompter reproduced: 6 permutations × "
        "all steps, no refinement).",
        "",
        "| method | mode | NFE | s/panel | transformer s/NFE | host s/candidate | peak GPU GiB | candidates | finished |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "–" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.1f}"
        lines.append(f"| {r['method']} | {r['mode']} | {r['nfe']} | {r['seconds']:.2f} | {r['s_per_nfe']:.4f} | "
                     f"{r['host_s_per_candidate']:.4f} | {peak} | {r['candidates']} | {r['finished']} |")
    lines += [
        "",
        f"Print pass (`--upscale 2`, strength {pass_settings.strength:g}, {pass_settings.steps} steps, tiles of at most "
        f"{pass_settings.tile} px, overlap {pass_settings.overlap}), eager, on a panel of a {spec.tile} px grid:",
        "",
        "| shape | panel | large | tiles | tile | NFE | s/pass | s/NFE | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in pass_rows:
        peak = "–" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.1f}"
        lines.append(f"| {r['shape']} | {r['panel']} | {r['large']} | {r['tiles']} | {r['tile']} | {r['nfe']} | "
                     f"{r['seconds']:.2f} | {r['s_per_nfe']:.4f} | {peak} |")
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps({"gpu": gpu, "date": stamp, "rows": rows, "print_pass": pass_rows}, indent=2) + "\n")
    print("\n" + table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
