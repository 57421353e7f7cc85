"""A step-wise FLUX Fill sampler built from the pipeline's own parts.

``FluxFillPipeline.__call__`` runs a candidate from noise to pixels in one go. DVP wants to start
several candidates, advance each a few steps, score a preview, and finish only the best. This
sampler reuses diffusers' prompt encoding, latent preparation, mask packing, timestep schedule and
scheduler step, calling them in the pipeline's order with the pipeline's random draws, so a
candidate that is paused and finished later gives exactly the pixels of an uninterrupted
``pipe(...)`` call. Each candidate owns a copy of the scheduler, because the scheduler keeps the
step index.

Previews decode the predicted clean latent of the whole canvas and crop the target cell: the VAE
decoder's receptive field (and its group norms, and the real VAE's mid-block attention) reach
across the canvas, so decoding the cell's latent slice alone gave other pixels than the same crop
of a full decode (19 levels on average on the tiny VAE, 32 at the border). A preview taken after
the last step is therefore exactly the finished cell.

With a diffusers cache on the transformer (``cache = "fbcache"``), every transformer call runs in
the candidate's own cache context, so the cache compares a candidate's step with that same
candidate's previous step, never with another candidate's.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ipprompt.dvp.grid import GridSpec


@dataclass
class PromptEncoding:
    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    text_ids: torch.Tensor


@dataclass
class SamplerState:
    """One candidate in flight: its latents, conditioning, own scheduler and progress."""

    spec: GridSpec
    steps: int
    latents: torch.Tensor
    masked_image_latents: torch.Tensor
    latent_image_ids: torch.Tensor
    guidance: torch.Tensor | None
    scheduler: Any
    timesteps: torch.Tensor
    encoding: PromptEncoding
    height: int
    width: int
    step: int = 0
    last_velocity: torch.Tensor | None = field(default=None, repr=False)
    cache_name: str = ""  # the candidate's cache context (with a transformer cache)

    @property
    def done(self) -> bool:
        return self.step >= len(self.timesteps)


class FluxFillSampler:
    """Start, advance, preview and finish FLUX Fill candidates one step at a time."""

    def __init__(self, pipe: Any, cached: bool = False) -> None:
        self.pipe = pipe
        self.cached = cached  # a diffusers cache hook sits on the transformer
        self.transformer_calls = 0
        self.text_encoder_calls = 0
        self._started = 0

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def encode_prompt(self, prompt: str) -> PromptEncoding:
        """Encode the text once; every candidate of a panel shares the result."""
        with torch.inference_mode():
            embeds, pooled, text_ids = self.pipe.encode_prompt(
                prompt=prompt, prompt_2=None, device=self.device, num_images_per_prompt=1, max_sequence_length=512
            )
        self.text_encoder_calls += 1
        return PromptEncoding(embeds, pooled, text_ids)

    @torch.inference_mode()
    def start(
        self,
        canvas: Image.Image,
        mask: Image.Image,
        encoding: PromptEncoding,
        seed: int,
        steps: int,
        guidance: float,
        spec: GridSpec,
    ) -> SamplerState:
        """Noise and masked-image latents for one candidate, exactly as ``pipe(...)`` makes them."""
        pipe = self.pipe
        device = self.device
        width, height = canvas.size
        multiple = pipe.vae_scale_factor * 2
        if width % multiple or height % multiple:
            raise ValueError(f"canvas {width}x{height} is not a multiple of {multiple} px")
        # The pipeline's draws, in its order, from a CPU generator (same pixels on any device).
        generator = torch.Generator(device="cpu").manual_seed(seed)
        dtype = encoding.prompt_embeds.dtype
        init_image = pipe.image_processor.preprocess(canvas, height=height, width=width).to(dtype=torch.float32)

        from ipprompt.dvp.rungs import set_flux_schedule

        scheduler = copy.deepcopy(pipe.scheduler)
        # The pipeline's schedule (retrieve_timesteps with linspace sigmas and mu): one function
        # for this and for every σ the search and the dry run print.
        timesteps = set_flux_schedule(scheduler, steps, width, height, device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        latent_timestep = timesteps[:1]
        channels = pipe.vae.config.latent_channels
        # prepare_latents noises through ``pipe.scheduler``; hand it this candidate's fresh copy
        # (the shared one may hold another run's step index, which would skip the noise).
        shared_scheduler, pipe.scheduler = pipe.scheduler, scheduler
        try:
            latents, latent_image_ids = pipe.prepare_latents(
                self._start_image(init_image, scheduler, generator, height, width, dtype, device),
                latent_timestep, 1, channels, height, width, dtype, device, generator, None,
            )
        finally:
            pipe.scheduler = shared_scheduler
        mask_image = pipe.mask_processor.preprocess(mask, height=height, width=width)
        masked_image = (init_image * (1 - mask_image)).to(device=device, dtype=dtype)
        mask_latents, masked_latents = pipe.prepare_mask_latents(
            mask_image, masked_image, 1, channels, 1, height, width, dtype, device, generator
        )
        masked_image_latents = torch.cat((masked_latents, mask_latents), dim=-1)
        guidance_t = None
        if pipe.transformer.config.guidance_embeds:
            guidance_t = torch.full([1], guidance, device=device, dtype=torch.float32).expand(latents.shape[0])
        self._started += 1
        return SamplerState(
            cache_name=f"candidate-{self._started}",
            spec=spec,
            steps=steps,
            latents=latents,
            masked_image_latents=masked_image_latents,
            latent_image_ids=latent_image_ids,
            guidance=guidance_t,
            scheduler=scheduler,
            timesteps=timesteps,
            encoding=encoding,
            height=height,
            width=width,
        )

    def _start_image(self, init_image: torch.Tensor, scheduler: Any, generator: torch.Generator, height: int, width: int,
                     dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """What ``prepare_latents`` should mix with the noise: zero latents instead of the canvas.

        The pipeline VAE-encodes the whole canvas and mixes it with the noise at the first sigma,
        which is exactly 1.0 for a full repaint: the encoding is multiplied by 0 and only its
        posterior sample's draw from the generator matters. Making that same draw and handing
        ready (zero) latents over skips one of the two full-canvas VAE encodes per candidate with
        the same pixels (tests compare with ``pipe(...)``).
        """
        pipe = self.pipe
        if float(scheduler.sigmas[0]) != 1.0:
            return init_image  # not a full repaint: the encoding counts
        from diffusers.utils.torch_utils import randn_tensor

        channels = pipe.vae.config.latent_channels
        shape = (1, channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        vae_dtype = getattr(pipe.vae, "dtype", dtype)
        randn_tensor(shape, generator=generator, device=device, dtype=vae_dtype)  # the encoder's sample
        return torch.zeros(shape, device=device, dtype=dtype)

    @torch.inference_mode()
    def advance(self, state: SamplerState, steps: int, on_step: Any = None) -> None:
        """Run up to ``steps`` denoising steps (one transformer evaluation each)."""
        pipe = self.pipe
        enc = state.encoding
        end = min(len(state.timesteps), state.step + steps)
        while state.step < end:
            t = state.timesteps[state.step]
            latents = state.latents
            timestep = t.expand(latents.shape[0]).to(latents.dtype)
            context = pipe.transformer.cache_context(state.cache_name) if self.cached else contextlib.nullcontext()
            with context:
                velocity = pipe.transformer(
                    hidden_states=torch.cat((latents, state.masked_image_latents), dim=2),
                    timestep=timestep / 1000,
                    guidance=state.guidance,
                    pooled_projections=enc.pooled_prompt_embeds,
                    encoder_hidden_states=enc.prompt_embeds,
                    txt_ids=enc.text_ids,
                    img_ids=state.latent_image_ids,
                    joint_attention_kwargs=None,
                    return_dict=False,
                )[0]
            self.transformer_calls += 1
            state.latents = state.scheduler.step(velocity, t, latents, return_dict=False)[0]
            state.last_velocity = velocity
            state.step += 1
            if on_step is not None:
                on_step()

    def _unpack(self, latents: torch.Tensor, state: SamplerState) -> torch.Tensor:
        pipe = self.pipe
        z = pipe._unpack_latents(latents, state.height, state.width, pipe.vae_scale_factor)
        return z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor

    @torch.inference_mode()
    def preview(self, state: SamplerState) -> Image.Image:
        """The target cell as the finished canvas would show it, predicted at the current step.

        Flow matching: x_t = (1 - s) x0 + s e and v = e - x0, so x0 = x_t - s v. After the
        scheduler step, the latents sit at the next sigma and v is the last velocity; the result is
        the model's prediction made at the sigma before that step. The whole canvas is decoded, as
        ``finish`` decodes it, and the target cell cropped: a crop of a full decode, pixel for pixel.
        """
        if state.last_velocity is None:
            raise ValueError("advance a candidate at least one step before previewing it")
        sigma = state.scheduler.sigmas[state.scheduler.step_index].to(state.latents.device, state.latents.dtype)
        x0 = state.latents - sigma * state.last_velocity
        z = self._unpack(x0, state)
        image = self.pipe.vae.decode(z.to(self.pipe.vae.dtype), return_dict=False)[0]
        full = self.pipe.image_processor.postprocess(image, output_type="pil")[0]
        return full.crop(state.spec.box(state.spec.target))

    def release(self, state: SamplerState) -> None:
        """Forget a candidate's cache state (a cache keeps one per context until told otherwise)."""
        if not self.cached:
            return
        for module in self.pipe.transformer.modules():
            registry = getattr(module, "_diffusers_hook", None)
            for hook in getattr(registry, "hooks", {}).values():
                manager = getattr(hook, "state_manager", None)
                cache = getattr(manager, "_state_cache", None)
                if isinstance(cache, dict):
                    cache.pop(state.cache_name, None)

    @torch.inference_mode()
    def finish(self, state: SamplerState, on_step: Any = None) -> Image.Image:
        """Run the remaining steps and decode the whole canvas, as the pipeline does."""
        self.advance(state, len(state.timesteps) - state.step, on_step=on_step)
        self.release(state)
        z = self._unpack(state.latents, state)
        image = self.pipe.vae.decode(z, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pil")[0]

    @torch.inference_mode()
    def refine(self, image: Image.Image, encoding: PromptEncoding, strength: float, seed: int, steps: int, guidance: float,
               on_step: Any = None) -> Image.Image:
        """Image-to-image through ``FluxFillPipeline.__call__`` with ``strength`` and an all-white mask.

        The pipeline noises the image's latents to the schedule's point ``strength`` and
        denoises from there; white masks everything, so the whole image is re-drawn from that
        noisy start (its composition and colours survive at low strength). A private copy of the
        scheduler keeps the candidates' shared one untouched (the pipeline moves its begin index).
        """
        pipe = self.pipe
        width, height = image.size
        multiple = pipe.vae_scale_factor * 2
        if width % multiple or height % multiple:
            raise ValueError(f"image {width}x{height} is not a multiple of {multiple} px")
        mask = Image.new("L", image.size, 255)

        def counted(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            self.transformer_calls += 1  # one transformer evaluation per step (guidance is embedded)
            if on_step is not None:
                on_step()
            return {}

        shared, pipe.scheduler = pipe.scheduler, copy.deepcopy(pipe.scheduler)
        try:
            out = pipe(
                prompt_embeds=encoding.prompt_embeds,
                pooled_prompt_embeds=encoding.pooled_prompt_embeds,
                image=image.convert("RGB"),
                mask_image=mask,
                height=height,
                width=width,
                strength=strength,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator(device="cpu").manual_seed(seed),
                output_type="pil",
                callback_on_step_end=counted,
                max_sequence_length=512,
            )
        finally:
            pipe.scheduler = shared
        return out.images[0]
