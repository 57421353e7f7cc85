"""Tiny random-weight models for tests and CPU benchmarks.

Real weights cannot be downloaded where the tests run, so these builders make models with the same
architecture families as FLUX.1-Fill-dev and CLIP, but a few thousand parameters, from configs. They
are saved with ``save_pretrained`` so that tests load them through the very ``from_pretrained`` path
real checkpoints take: nothing in the loading code is mocked.

The FLUX Fill VAE has four blocks, so its spatial scale is 8 as in the real model: masks, canvas
sizes and latent packing behave exactly as in production.
"""

from __future__ import annotations

from pathlib import Path

# Words the tiny tokenizers know. Anything else maps to the unknown token, which is fine for random
# weights; the vocabulary only has to be stable so that saved and reloaded tokenizers agree.
_BASE_VOCAB = (
    "a an the of in on at with and to from over under above his her its is are by for into "
    "girl boy old man woman keeper lighthouse cliff sea storm stormy night day lamp lantern boat "
    "red yellow white navy blue green raincoat boots coat beard stairs spiral room glass lens tea "
    "gull seagull harbour rowboat waves sky stars starry grassy tower top great small fishing "
    "style illustration flat cells grid share same art panel comic image picture"
).split()


def _vocab() -> dict[str, int]:
    specials = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>", "</s>"]
    words = specials + sorted(set(_BASE_VOCAB))
    return {w: i for i, w in enumerate(words)}


def _word_tokenizer(model_max_length: int, *, clip_style: bool, end_token: bool = False):
    """A fast tokenizer built offline with the `tokenizers` library.

    ``CLIPTokenizerFast`` refuses a WordLevel model, so the generic fast class is used; the FLUX
    pipeline only needs ``__call__`` with padding and truncation. ``end_token`` wraps every text
    in start and end tokens as the real CLIP tokenizer does: CLIP pools its text embedding at the
    end token, so without one a text's embedding would depend on what else is in its batch.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(_vocab(), unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if end_token:
        vocab = _vocab()
        tok.post_processor = processors.TemplateProcessing(
            single="<|startoftext|> $A <|endoftext|>",
            special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]), ("<|endoftext|>", vocab["<|endoftext|>"])],
        )
    if clip_style:
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="<unk>",
            pad_token="<|endoftext|>",
            bos_token="<|startoftext|>",
            eos_token="<|endoftext|>",
            model_max_length=model_max_length,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="</s>",
        model_max_length=model_max_length,
    )


def tiny_transformer_config(in_channels: int, out_channels: int) -> dict[str, object]:
    """A one-block FLUX transformer config (Fill-dev is guidance-distilled: guidance embeds on).

    Fill's ``in_channels`` is 8·C + 4·s² and ``out_channels`` 4·C for a VAE with C latent channels
    and scale s; a LoRA made for FLUX.1-dev has 4·C inputs, which diffusers widens when it loads.
    """
    return dict(
        patch_size=1,
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )


def build_tiny_flux_fill(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny FluxFillPipeline (random weights, real component classes) to ``path``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxFillPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    path = Path(path)
    torch.manual_seed(seed)
    latent_channels = 4
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=2,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        # The real VAE has mid-block attention over the whole canvas; at test canvases of
        # 768-1536 px that attention alone would dominate CPU time, and it does not change
        # any shape or code path we rely on.
        mid_block_add_attention=False,
    )
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    transformer = FluxTransformer2DModel(**tiny_transformer_config(8 * latent_channels + 4 * scale * scale, 4 * latent_channels))
    vocab_size = len(_vocab()) + 8
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=_vocab()["<|startoftext|>"],
            eos_token_id=_vocab()["<|endoftext|>"],
            pad_token_id=_vocab()["<|endoftext|>"],
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=_vocab()["</s>"],
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxFillPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_word_tokenizer(77, clip_style=True),
        text_encoder_2=text_encoder_2,
        tokenizer_2=_word_tokenizer(512, clip_style=False),
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_clip(path: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """Save a tiny CLIPModel with its processor (image processor + tokenizer) to ``path``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    path = Path(path)
    torch.manual_seed(seed)
    vocab = _vocab()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab) + 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "image_size": image_size,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
        },
        projection_dim=16,
    )
    model = CLIPModel(config)
    # The processor's crop must equal the vision tower's input size.
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = CLIPProcessor(
        image_processor=image_processor, tokenizer=_word_tokenizer(77, clip_style=True, end_token=True)
    )
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path



def build_tiny_dinov2(path: str | Path, seed: int = 0, image_size: int = 28) -> Path:
    """Save a tiny Dinov2Model with a matching image processor to ``path``.

    ``ipprompt eval`` measures character consistency with DINOv2 image features; this is the same
    model class as ``facebook/dinov2-small`` at a few thousand parameters, so tests load it through
    the real ``from_pretrained`` path.
    """
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    path = Path(path)
    torch.manual_seed(seed)
    config = Dinov2Config(
        image_size=image_size,
        patch_size=14,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
    )
    model = Dinov2Model(config)
    # DINOv2's own processor class; its crop must equal the model's input size.
    image_processor = BitImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    model.save_pretrained(path, safe_serialization=True)
    image_processor.save_pretrained(path)
    return path


def build_tiny_lora(path: str | Path, *, seed: int = 1, rank: int = 2, from_dev: bool = True) -> Path:
    """Save a LoRA for the tiny FLUX Fill transformer in the diffusers LoRA format (one .safetensors).

    With ``from_dev`` the LoRA is trained-shaped for a tiny FLUX.1-dev-like transformer (plain
    latent input, 4·C channels) and also adapts ``x_embedder``, as FLUX.1-Turbo-Alpha does: loading
    it into Fill exercises diffusers' widening of the LoRA to Fill's input (its PR #10259). The
    weights are random and non-zero, so the LoRA visibly changes the output.
    """
    import torch
    from diffusers import FluxFillPipeline, FluxTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict

    path = Path(path)
    torch.manual_seed(seed)
    latent_channels, scale = 4, 8
    in_channels = 4 * latent_channels if from_dev else 8 * latent_channels + 4 * scale * scale
    transformer = FluxTransformer2DModel(**tiny_transformer_config(in_channels, 4 * latent_channels))
    targets = ["to_q", "to_k", "to_v", "to_out.0", "x_embedder"]
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False))
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_" in name:
                p.mul_(4.0)  # strong enough to change a few-step image of random weights
    layers = get_peft_model_state_dict(transformer)
    FluxFillPipeline.save_lora_weights(path, transformer_lora_layers=layers, safe_serialization=True)
    return path
