"""One story run: from a story file to a resumable run folder and its storyboard.

``run_story`` is the library entry point; ``ipprompt story run`` is a thin skin over it. Numbered
steps, as in diffusers pipelines:

1. load the story and apply overrides (validated like the story's own [generation] table);
2. open the theme library and the encoder (CLIP, or lexical retrieval when none is available);
3. plan every selected panel: key elements, retrieval, pinned references, and a key that hashes
   everything deciding its pixels;
4. reuse panels whose key matches a finished panel of the previous manifest;
5. load the generator only if something is left to generate, encode all prompts once, then free
   the text encoders;
6. search each remaining panel (candidates, scores, refinement), write its files atomically and
   the manifest after every panel, so Ctrl-C loses at most the panel in progress;
7. render the storyboard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from pydantic import ValidationError

import ipprompt
from ipprompt.backends.base import Backend
from ipprompt.dvp.elements import Element, extract_elements, panel_text
from ipprompt.dvp.layout import GridSpec, RefImage, target_mask
from ipprompt.dvp.search import CandidateSearch, PanelPrompt, SearchResult, SearchSettings
from ipprompt.errors import IppromptError
from ipprompt.progress import RunProgress, SilentProgress
from ipprompt.runfolder import RunFolder, atomic_save_image
from ipprompt.scoring import Scorer
from ipprompt.story import Generation, Story, load_story
from ipprompt.theme.importer import sha256_hex

MIN_THEME_IMAGES = 3
RETRIEVAL_K = 9
EXCLUDE_TOP = 3
THUMB_PX = 256
KEY_VERSION = "ipprompt-panel-1"
# Settings that decide a panel's pixels. Offload and compile do not change them; the compute
# dtype (bf16 on a GPU, fp32 on a CPU), quantization and VAE tiling do, and join the key too.
_KEY_SETTINGS = ("backend", "model", "encoder", "tile", "grid", "steps", "guidance", "candidates", "rounds", "search", "preview_step", "keep", "continuity")


@dataclass(frozen=True)
class MachineOptions:
    """How to run, not what to make: these never change a panel's key (except quantize)."""

    device: str = "auto"
    offload: str = "none"
    quantize: str = "none"
    vae_tiling: bool = False
    compile: bool = False


@dataclass
class PanelPlan:
    number: int
    text: str
    elements: list[Element]
    ranked: list[list[RefImage]]
    pinned: list[RefImage]
    seed: int
    key: str


@dataclass
class RunResult:
    out: Path
    manifest: dict[str, Any]
    generated: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    storyboard: Path | None = None


# --------------------------------------------------------------------------- helpers


def parse_panel_selection(text: str, total: int) -> list[int]:
    """``"1-3,5"`` -> [1, 2, 3, 5]; panel numbers start at 1, as on the storyboard."""
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise IppromptError(f"--panels: '{part}' is not a panel number or range.", "Example: --panels 1-3,5") from None
        if lo > hi:
            raise IppromptError(f"--panels: '{part}' is a reversed range.", f"Write it as {hi}-{lo}.")
        if lo < 1 or hi > total:
            raise IppromptError(f"--panels: '{part}' is outside 1-{total}.", f"The story has {total} panels.")
        chosen.update(range(lo, hi + 1))
    if not chosen:
        raise IppromptError("--panels selects no panel.", "Example: --panels 1-3,5")
    return sorted(chosen)


def apply_overrides(generation: Generation, overrides: dict[str, Any]) -> Generation:
    """The story's [generation] with command-line values on top, validated by the same schema."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Generation.model_validate({**generation.model_dump(), **given})
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            key = ".".join(str(p) for p in e["loc"])
            msg = e.get("ctx", {}).get("error", e["msg"])
            problems.append(f"--{key.replace('_', '-')} {given.get(key)!r}: {msg}")
        raise IppromptError("Invalid option: " + "; ".join(problems), "See `ipprompt story run --help`.") from None


def _open_ref(ref: RefImage) -> Image.Image:
    try:
        with Image.open(ref.path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError) as exc:
        raise IppromptError(f"Cannot read reference image {ref.path}: {exc}", "Replace or remove the file.") from None


@contextlib.contextmanager
def out_of_memory_is_a_user_error(doing: str) -> Iterator[None]:
    """Turn CUDA OOM (loading, encoding or generating) into advice on the memory options."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        raise IppromptError(
            f"The GPU ran out of memory ({doing}).",
            "Try `--offload model --quantize fp8` (24 GB cards), `--offload model` (32 GB and more), or "
            "`--offload sequential` (least memory, slowest); `ipprompt doctor` suggests a mode for your GPU. "
            "Finished panels are kept: run the command again with the new options.",
        ) from None


def model_available_locally(model_id: str) -> bool:
    """True when a model is a local folder or already in the Hugging Face cache (no network)."""
    if Path(model_id).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        # A diffusers pipeline has model_index.json at its root, a transformers model config.json.
        return any(isinstance(try_to_load_from_cache(model_id, name), str) for name in ("model_index.json", "config.json"))
    except Exception:
        return False


# --------------------------------------------------------------------------- the run


class StoryRun:
    """State of one run; ``run_story`` is the convenient front door."""

    def __init__(
        self,
        story: Story,
        settings: Generation,
        out: Path,
        machine: MachineOptions,
        progress: RunProgress,
        backend: Backend | None = None,
        encoder: Any | None = None,
    ) -> None:
        self.story = story
        self.settings = settings
        self.folder = RunFolder(out)
        self.machine = machine
        self.progress = progress
        self._backend = backend
        self._encoder = encoder
        self.spec = GridSpec(settings.grid, settings.tile)
        self.library: Any = None

    # 2. theme and encoder ---------------------------------------------------------
    def open_theme(self) -> None:
        from ipprompt.clip import load_encoder_or_none
        from ipprompt.theme.library import ThemeLibrary

        encoder = self._encoder
        if encoder is None:
            if self.settings.backend == "preview" and not model_available_locally(self.settings.encoder):
                self.progress.note(
                    f"Preview backend: CLIP model '{self.settings.encoder}' is not on this machine; "
                    "matching references on captions and tags instead (no download)."
                )
            else:
                encoder = load_encoder_or_none(self.settings.encoder, warn=self.progress.note)
                if encoder is None and self.settings.backend != "preview":
                    self.progress.note(
                        "Without CLIP, candidates are ranked by their references' retrieval scores, not by "
                        "what was generated; pruned search then cannot judge previews."
                    )
        self._encoder = encoder
        self.library = ThemeLibrary.open(self.story.doc.theme, encoder, relative_to=self.story.folder, progress=self.progress.indexing)
        for refusal in self.library.sync_report.refused:
            self.progress.note(f"skipped theme file {refusal.line()}")
        if len(self.library) < MIN_THEME_IMAGES:
            raise IppromptError(
                f"Theme {self.library.path} has {len(self.library)} image(s); at least {MIN_THEME_IMAGES} are needed.",
                "Add reference images: `ipprompt theme add THEME IMAGES...` or copy images into the folder.",
            )

    # 3. planning --------------------------------------------------------------------
    def _pinned(self, panel_chars: Iterable[str]) -> list[RefImage]:
        refs = []
        for cid in dict.fromkeys(panel_chars):
            for path in self.story.ref_paths(cid):
                refs.append(RefImage(sha256_hex(path.read_bytes()), path, f"{self.story.display_name(cid)} (pinned)"))
        return refs

    def plan(self, number: int, previous: dict[str, Any] | None) -> PanelPlan:
        panel = self.story.panels[number - 1]
        elements = extract_elements(panel, self.story)
        pinned = self._pinned(panel.characters)
        matches = self.library.match([e.text for e in elements], k=RETRIEVAL_K, exclude_top=EXCLUDE_TOP, pinned=[p.sha256 for p in pinned])
        ranked = [
            [RefImage(m.image.sha256, m.image.path, m.image.caption, round(float(m.score), 6)) for m in em.refs] for em in matches
        ]
        if self.settings.continuity and previous and previous.get("image"):
            prev_path = self.folder.root / previous["image"]
            if prev_path.is_file():
                elements.append(Element("continuity", f"panel {previous['number']}", str(previous["number"])))
                ranked.append([RefImage(sha256_hex(prev_path.read_bytes()), prev_path, f"panel {previous['number']}", 1.0)])
        seed = panel.seed if panel.seed is not None else self.settings.seed + number
        text = panel_text(panel, self.story)
        key_data = {
            "v": KEY_VERSION,
            "text": text,
            "elements": [[e.kind, e.text] for e in elements],
            "ranked": [[r.sha256 for r in refs] for refs in ranked],
            "pinned": [p.sha256 for p in pinned],
            "seed": seed,
            "settings": {k: getattr(self.settings, k) for k in _KEY_SETTINGS},
            "quantize": self.machine.quantize,
            "vae_tiling": self.machine.vae_tiling,
            "dtype": self._planned_dtype(),
            "retrieval": self.library.mode,
        }
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:24]
        return PanelPlan(number, text, elements, ranked, pinned, seed, key)

    def _planned_dtype(self) -> str | None:
        """The dtype the generator will compute in, known before it is loaded."""
        if self.settings.backend == "preview":
            return None
        from ipprompt.backends.flux_fill import resolve_device

        return "bfloat16" if resolve_device(self.machine.device).type == "cuda" else "float32"

    # 5. generator -------------------------------------------------------------------
    def backend(self) -> Backend:
        if self._backend is None:
            if self.settings.backend == "preview":
                from ipprompt.backends.preview import PreviewBackend

                self._backend = PreviewBackend()
            else:
                from ipprompt.backends.flux_fill import FluxFillBackend, FluxOptions, resolve_device

                if resolve_device(self.machine.device).type == "cpu" and not Path(self.settings.model).is_dir():
                    self.progress.note(
                        "warning: no CUDA GPU: FLUX Fill runs on the CPU, which takes hours per panel "
                        "for the full-size model. Use --backend preview to plan, or --device to choose."
                    )
                self._backend = FluxFillBackend.load(
                    self.settings.model,
                    FluxOptions(
                        device=self.machine.device,
                        offload=self.machine.offload,  # type: ignore[arg-type]
                        quantize=self.machine.quantize,  # type: ignore[arg-type]
                        vae_tiling=self.machine.vae_tiling,
                        compile=self.machine.compile,
                    ),
                )
        return self._backend

    # 6. one panel ---------------------------------------------------------------------
    def generate(self, plan: PanelPlan, backend: Backend) -> dict[str, Any]:
        import torch

        panel = self.story.panels[plan.number - 1]
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        scorer = Scorer(self._encoder, self._reference_embeddings if self._encoder is not None else None)
        search = CandidateSearch(
            backend,
            scorer,
            self.spec,
            SearchSettings(
                candidates=self.settings.candidates,
                rounds=self.settings.rounds,
                steps=self.settings.steps,
                guidance=self.settings.guidance,
                search=self.settings.search,
                preview_step=self.settings.preview_step,
                keep=self.settings.keep,
            ),
            _open_ref,
            self.progress,
        )
        label = " | ".join(e.label for e in plan.elements)
        prompt = PanelPrompt(
            plan.text,
            tuple(e.text for e in plan.elements),
            tuple(tuple(r) for r in plan.ranked),
            tuple(plan.pinned),
            plan.seed,
            label,
        )
        with out_of_memory_is_a_user_error(f"panel {plan.number}"):
            result = search.run(prompt)
        seconds = time.perf_counter() - started
        peak = int(torch.cuda.max_memory_allocated()) if cuda else None
        return self._write_panel(plan, panel, result, seconds, peak, backend.stats())

    def _reference_embeddings(self, refs: list[RefImage]) -> Any:
        import numpy as np

        known = {img.sha256 for img in self.library.images}
        in_lib = [r for r in refs if r.sha256 in known]
        vecs: dict[str, Any] = {}
        if in_lib:
            for r, v in zip(in_lib, self.library.embeddings_for([r.sha256 for r in in_lib])):
                vecs[r.sha256] = v
        others = [r for r in refs if r.sha256 not in vecs]
        if others:
            for r, v in zip(others, self._encoder.embed_images([_open_ref(r) for r in others])):
                vecs[r.sha256] = v
        return np.stack([vecs[r.sha256] for r in refs])

    def _thumb(self, ref: RefImage) -> str:
        path = self.folder.ref_thumb(ref.sha256)
        if not path.exists():
            image = _open_ref(ref)
            image.thumbnail((THUMB_PX, THUMB_PX))
            atomic_save_image(path, image, quality=85)
        return self.folder.rel(path)

    def _ref_json(self, ref: RefImage) -> dict[str, Any]:
        return {"sha256": ref.sha256, "caption": ref.caption, "score": ref.score, "file": ref.path.name, "thumb": self._thumb(ref)}

    def _write_panel(
        self, plan: PanelPlan, panel: Any, result: SearchResult, seconds: float, peak: int | None, backend_stats: dict[str, Any]
    ) -> dict[str, Any]:
        pdir = self.folder.panel_dir(plan.number)
        mask_path = pdir / "mask.png"
        atomic_save_image(mask_path, target_mask(self.spec))
        candidates = []
        for c in result.candidates:
            grid_path = pdir / f"grid-{c.index}.png"
            cand_path = pdir / f"cand-{c.index}.png"
            atomic_save_image(grid_path, c.canvas)
            if c.cell is not None:
                atomic_save_image(cand_path, c.cell)
            arrangement = c.arrangement.to_json()
            for cell in arrangement["cells"]:  # type: ignore[union-attr]
                ref = next(p.ref for p in c.arrangement.placements if p.ref.sha256 == cell["sha256"])
                cell["thumb"] = self._thumb(ref)
                cell["caption"] = ref.caption
            candidates.append(
                {
                    "index": c.index,
                    "round": c.round,
                    "seed": c.seed,
                    "arrangement": arrangement,
                    "grid": self.folder.rel(grid_path),
                    "image": self.folder.rel(cand_path) if c.cell is not None else None,
                    "steps_run": c.steps_run,
                    "finished": c.finished,
                    "pruned": c.pruned,
                    "preview_scores": c.preview_scores.to_json() if c.preview_scores else None,
                    "scores": c.scores.to_json() if c.scores else None,
                    "chosen": c.index == result.chosen,
                }
            )
        atomic_save_image(self.folder.panel_image(plan.number), result.image)
        return {
            "number": plan.number,
            "status": "done",
            "key": plan.key,
            "prompt": panel.prompt,
            "text": plan.text,
            **self._overlay_text(plan.number),
            "scene": panel.scene,
            "seed": plan.seed,
            "elements": [
                {"kind": e.kind, "text": e.text, "source": e.source, "label": e.label, "refs": [self._ref_json(r) for r in refs]}
                for e, refs in zip(plan.elements, plan.ranked)
            ],
            "pinned": [self._ref_json(r) for r in plan.pinned],
            "mask": self.folder.rel(mask_path),
            "candidates": candidates,
            "chosen": result.chosen,
            "image": self.folder.rel(self.folder.panel_image(plan.number)),
            "settings": {k: getattr(self.settings, k) for k in _KEY_SETTINGS} | {"seed": self.settings.seed},
            "machine": backend_stats,
            "rounds_run": result.rounds_run,
            "nfe": result.nfe,
            "seconds": round(seconds, 3),
            "peak_gpu_bytes": peak,
        }

    # the whole run ---------------------------------------------------------------------
    def _overlay_text(self, number: int) -> dict[str, Any]:
        """Text drawn over a panel, not into it: always as the story says now, even for kept panels."""
        panel = self.story.panels[number - 1]
        return {
            "caption": panel.caption,
            "dialogue": [{"speaker": d.speaker, "name": self.story.display_name(d.speaker), "text": d.text} for d in panel.dialogue],
            "characters": [{"id": c, "name": self.story.display_name(c)} for c in panel.characters],
        }

    def _pending(self, number: int) -> dict[str, Any]:
        panel = self.story.panels[number - 1]
        return {"number": number, "status": "pending", "prompt": panel.prompt, **self._overlay_text(number)}

    def _reusable(self, old: dict[str, Any] | None, plan: PanelPlan) -> bool:
        if not old or old.get("status") != "done" or old.get("key") != plan.key:
            return False
        files = [old.get("image"), old.get("mask")] + [c.get("grid") for c in old.get("candidates", [])]
        return all(isinstance(f, str) and (self.folder.root / f).is_file() for f in files)

    def _manifest(self, panels: list[dict[str, Any]], backend: Backend | None, started: str) -> dict[str, Any]:
        done = [p for p in panels if p.get("status") == "done"]
        peaks = [p["peak_gpu_bytes"] for p in done if p.get("peak_gpu_bytes")]
        s = self.settings
        return {
            "format": 1,
            "tool": f"ipprompt {ipprompt.__version__}",
            "created": started,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "story": {
                "title": self.story.title,
                "path": str(self.story.path),
                "style": self.story.style,
                "characters": {cid: {"name": self.story.display_name(cid), "description": c.description} for cid, c in self.story.characters.items()},
                "scenes": {sid: {"name": sc.name or sid, "description": sc.description} for sid, sc in self.story.scenes.items()},
            },
            "settings": s.model_dump(),
            "machine": (backend.stats() if backend is not None else {}) | {"device_requested": self.machine.device},
            "models": {
                "generator": None if s.backend == "preview" else s.model,
                "encoder": s.encoder if self._encoder is not None else None,
                "retrieval": self.library.mode,
            },
            "theme": {"path": str(self.library.path), "name": self.library.name, "images": len(self.library)},
            "grid": {"grid": self.spec.grid, "tile": self.spec.tile, "size": self.spec.size, "target": list(self.spec.target)},
            "panels": panels,
            "totals": {
                "panels_done": len(done),
                "nfe": sum(p.get("nfe", 0) for p in done),
                "seconds": round(sum(p.get("seconds", 0.0) for p in done), 3),
                "peak_gpu_bytes": max(peaks) if peaks else None,
            },
        }

    def run(self, selection: list[int] | None, force: bool) -> RunResult:
        total = len(self.story.panels)
        numbers = selection or list(range(1, total + 1))
        self._check_out_folder()
        old_manifest = self.folder.read_manifest() or {}
        old_panels = {p.get("number"): p for p in old_manifest.get("panels", []) if isinstance(p, dict)}
        started = old_manifest.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.open_theme()
        panels: dict[int, dict[str, Any]] = {
            n: {**old_panels[n], **self._overlay_text(n)} if n in old_panels else self._pending(n) for n in range(1, total + 1)
        }
        result = RunResult(self.folder.root, {})
        self.progress.start_run(len(numbers), denoising=self.settings.backend != "preview")
        backend: Backend | None = self._backend
        previous: dict[str, Any] | None = None
        plans: dict[int, PanelPlan] = {}
        try:
            # Plans of panels that need generating; continuity makes each depend on its predecessor.
            for n in numbers:
                previous = panels.get(n - 1) if n > 1 else None
                plan = self.plan(n, previous)
                if not force and self._reusable(old_panels.get(n), plan):
                    result.reused.append(n)
                    self.progress.start_panel(n, "unchanged, kept")
                    self.progress.end_panel(reused=True)
                    continue
                if self.settings.continuity:
                    # Generate now: the next panel's plan depends on this panel's new image.
                    backend = self._generate_one(n, plan, panels, backend, result, started)
                else:
                    plans[n] = plan
            if not self.settings.continuity and plans:
                with out_of_memory_is_a_user_error("loading the model and encoding the prompts"):
                    backend = self.backend()
                    backend.encode_texts([p.text for p in plans.values()])
                    backend.release_text_encoders()
                for n, plan in plans.items():
                    backend = self._generate_one(n, plan, panels, backend, result, started)
        finally:
            self.progress.close()
        result.manifest = self._manifest([panels[n] for n in range(1, total + 1)], backend, started)
        self.folder.write_manifest(result.manifest)
        result.storyboard = self._render()
        return result

    def _generate_one(
        self, n: int, plan: PanelPlan, panels: dict[int, dict[str, Any]], backend: Backend | None, result: RunResult, started: str
    ) -> Backend:
        if backend is None:
            with out_of_memory_is_a_user_error("loading the model"):
                backend = self.backend()
        backend.on_step = self.progress.step  # type: ignore[attr-defined]
        self.progress.start_panel(n, self.story.panels[n - 1].prompt)
        previous = panels.get(n)
        if previous and previous.get("status") == "done":
            # Say on disk that this panel is being remade before its old files move away, so a
            # Ctrl-C now leaves a pending panel, never a "done" one with missing files.
            panels[n] = self._pending(n)
            self.folder.write_manifest(self._manifest([panels[i] for i in sorted(panels)], backend, started))
        self._set_aside_previous(n, previous)
        panels[n] = self.generate(plan, backend)
        result.generated.append(n)
        self.folder.write_manifest(self._manifest([panels[i] for i in sorted(panels)], backend, started))
        self.progress.end_panel(reused=False)
        return backend

    def _check_out_folder(self) -> None:
        """Refuse to write into a folder that holds anything but a run of this story.

        A mistyped ``--out`` must never overwrite someone's files or another story's run.
        """
        root = self.folder.root
        if not root.exists():
            return
        if not root.is_dir():
            raise IppromptError(f"--out {root} is a file, not a folder.", "Choose a folder for the run.")
        if not any(root.iterdir()):
            return
        manifest = self.folder.read_manifest()
        if manifest is None:
            raise IppromptError(
                f"{root} is not empty and holds no ipprompt run; nothing was written there.",
                "Choose another --out (default: runs/<story name>/), or empty that folder.",
            )
        other = manifest.get("story", {}).get("path")
        if other and Path(other).resolve() != self.story.path:
            raise IppromptError(
                f"{root} holds the run of another story ({other}); nothing was written there.",
                "Choose another --out for this story.",
            )

    def _set_aside_previous(self, number: int, old: dict[str, Any] | None) -> None:
        """Keep the image a panel had before it is made again (the user may have liked it).

        The old panel image moves to ``history/NN-<key>.png``; the old candidates' inspection
        files are removed so the folder matches the new manifest.
        """
        image = self.folder.panel_image(number)
        if image.is_file():
            key = (old or {}).get("key") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            history = self.folder.root / "history" / f"{number:02d}-{key}.png"
            history.parent.mkdir(parents=True, exist_ok=True)
            os.replace(image, history)
        pdir = self.folder.panel_dir(number)
        if pdir.is_dir():
            for stale in [*pdir.glob("grid-*.png"), *pdir.glob("cand-*.png")]:
                stale.unlink()

    def _render(self) -> Path | None:
        try:
            from ipprompt.render import render_storyboard
        except ImportError:
            return None
        return render_storyboard(self.folder.root)


def run_story(
    path: str | Path,
    *,
    out: str | Path | None = None,
    panels: str | list[int] | None = None,
    force: bool = False,
    progress: RunProgress | None = None,
    device: str = "auto",
    offload: str = "none",
    quantize: str = "none",
    vae_tiling: bool = False,
    compile: bool = False,
    backend_instance: Backend | None = None,
    encoder_instance: Any | None = None,
    **overrides: Any,
) -> RunResult:
    """Run a story from Python exactly as ``ipprompt story run`` does.

    ``overrides`` are [generation] keys (backend, model, encoder, steps, candidates, seed, rounds,
    search, preview_step, keep, continuity, tile, grid, guidance); None means "as in the story".
    """
    story = load_story(path)
    settings = apply_overrides(story.generation, overrides)
    out_dir = Path(out) if out is not None else Path.cwd() / "runs" / Path(path).stem
    selection = parse_panel_selection(panels, len(story.panels)) if isinstance(panels, str) else panels
    machine = MachineOptions(device=device, offload=offload, quantize=quantize, vae_tiling=vae_tiling, compile=compile)
    run = StoryRun(story, settings, out_dir, machine, progress or SilentProgress(), backend_instance, encoder_instance)
    return run.run(selection, force)
