"""Write a diffusers VQ-Diffusion pipeline in the layout of the official microsoft/VQ-Diffusion
release: the reference for ``generation.convert --from official``'s tests.

The names follow diffusers' own port of the release (scripts/convert_vq_diffusion_to_diffusers.py)
read backwards: ``transformer.transformer.blocks.{i}.attn1.query``, taming's
``encoder.down.{i}.block.{j}`` with 1x1-convolution attention, OpenAI CLIP's fused
``in_proj_weight``, the learned null as ``transformer.empty_text_embed`` (float64), the EMA
copy of the diffusion transformer under ``ema``. Written here independently of the converter,
so a naming mistake on either side shows up as a mismatch.

From the command line: ``python -m benchmarks.diffusers_reference --shape official --out D --official O``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

PATHS = {  # where the official download script puts the files
    "checkpoint": "OUTPUT/pretrained_model/ithq_learnable.pth",
    "config": "configs/ithq.yaml",
    "vqvae": "OUTPUT/pretrained_model/taming_dvae/ithq_vqvae.pth",
    "vqvae_config": "OUTPUT/pretrained_model/taming_dvae/config.yaml",
}
TRANSFORMER = {  # diffusers block part -> official
    "norm1.emb": "ln1.emb", "norm1.linear": "ln1.linear", "norm2.emb": "ln1_1.emb", "norm2.linear": "ln1_1.linear",
    "attn1.to_q": "attn1.query", "attn1.to_k": "attn1.key", "attn1.to_v": "attn1.value", "attn1.to_out.0": "attn1.proj",
    "attn2.to_q": "attn2.query", "attn2.to_k": "attn2.key", "attn2.to_v": "attn2.value", "attn2.to_out.0": "attn2.proj",
    "norm3": "ln2", "ff.net.0.proj": "mlp.0", "ff.net.2": "mlp.2",
}


def transformer_weights(transformer) -> dict[str, torch.Tensor]:
    """Official Text2ImageTransformer names (without the model's `transformer.transformer.` prefix)."""
    sd, out = transformer.state_dict(), {}
    for key, value in sd.items():
        if key.startswith("transformer_blocks."):
            _, i, rest = key.split(".", 2)
            part, leaf = rest.rsplit(".", 1)
            out[f"blocks.{i}.{TRANSFORMER[part]}.{leaf}"] = value
        else:
            part, leaf = key.rsplit(".", 1)
            part = {"latent_image_embedding.emb": "content_emb.emb", "latent_image_embedding.height_emb":
                    "content_emb.height_emb", "latent_image_embedding.width_emb": "content_emb.width_emb",
                    "norm_out": "to_logits.0", "out": "to_logits.1"}[part]
            out[f"{part}.{leaf}"] = value
    seq = transformer.config.sample_size ** 2
    for i in range(transformer.config.num_layers):  # CrossAttention(causal=True) keeps an unused mask buffer
        out[f"blocks.{i}.attn2.mask"] = torch.tril(torch.ones(seq, seq)).view(1, 1, seq, seq)
    return out


def clip_weights(text_model, projection_seed: int = 0) -> dict[str, torch.Tensor]:
    """OpenAI CLIP text-tower names for a transformers CLIPTextModel."""
    sd = {k.removeprefix("text_model."): v for k, v in text_model.state_dict().items()}
    out = {"token_embedding.weight": sd["embeddings.token_embedding.weight"],
           "positional_embedding": sd["embeddings.position_embedding.weight"],
           "ln_final.weight": sd["final_layer_norm.weight"], "ln_final.bias": sd["final_layer_norm.bias"]}
    width = out["token_embedding.weight"].shape[1]
    out["text_projection"] = torch.randn(width, width, generator=torch.Generator().manual_seed(projection_seed))
    for i in range(text_model.config.num_hidden_layers):
        a, b = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for leaf in ("weight", "bias"):
            out[f"{b}attn.in_proj_{leaf}"] = torch.cat([sd[f"{a}self_attn.{p}_proj.{leaf}"] for p in "qkv"])
            out[f"{b}attn.out_proj.{leaf}"] = sd[f"{a}self_attn.out_proj.{leaf}"]
            out[f"{b}ln_1.{leaf}"] = sd[f"{a}layer_norm1.{leaf}"]
            out[f"{b}ln_2.{leaf}"] = sd[f"{a}layer_norm2.{leaf}"]
            out[f"{b}mlp.c_fc.{leaf}"] = sd[f"{a}mlp.fc1.{leaf}"]
            out[f"{b}mlp.c_proj.{leaf}"] = sd[f"{a}mlp.fc2.{leaf}"]
    return out


def vqgan_weights(vq) -> dict[str, torch.Tensor]:
    """taming VQGAN names for a diffusers VQModel (as diffusers' port reads them)."""
    sd, out = vq.state_dict(), {}

    def copy(src, dst, conv1x1=False):
        for leaf in ("weight", "bias"):
            if f"{src}.{leaf}" in sd:
                v = sd[f"{src}.{leaf}"]
                out[f"{dst}.{leaf}"] = v[:, :, None, None] if conv1x1 and leaf == "weight" else v

    def resnet(src, dst):
        for a, b in (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
                     ("conv_shortcut", "nin_shortcut")):
            copy(f"{src}.{a}", f"{dst}.{b}")

    def attention(src, dst):
        copy(f"{src}.group_norm", f"{dst}.norm")
        for a, b in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            copy(f"{src}.{a}", f"{dst}.{b}", conv1x1=True)

    n = len(vq.encoder.down_blocks)
    for part in ("encoder", "decoder"):
        copy(f"{part}.conv_in", f"{part}.conv_in")
        copy(f"{part}.conv_out", f"{part}.conv_out")
        copy(f"{part}.conv_norm_out", f"{part}.norm_out")
        attention(f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1")
        for j in range(2):
            resnet(f"{part}.mid_block.resnets.{j}", f"{part}.mid.block_{j + 1}")
    for i, block in enumerate(vq.encoder.down_blocks):
        for j in range(len(block.resnets)):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}")
        for j in range(len(getattr(block, "attentions", []))):
            attention(f"encoder.down_blocks.{i}.attentions.{j}", f"encoder.down.{i}.attn.{j}")
        copy(f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv")
    for i, block in enumerate(vq.decoder.up_blocks):
        k = n - 1 - i  # stored top-down in the official checkpoint
        for j in range(len(block.resnets)):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{k}.block.{j}")
        for j in range(len(getattr(block, "attentions", []))):
            attention(f"decoder.up_blocks.{i}.attentions.{j}", f"decoder.up.{k}.attn.{j}")
        copy(f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{k}.upsample.conv")
    for name in ("quant_conv", "post_quant_conv"):
        copy(name, name)
    out["quantize.embedding"] = sd["quantize.embedding.weight"]
    assert len(out) == len(sd), f"wrote {len(out)} of the VQModel's {len(sd)} tensors"
    return out


def configs(pipe) -> tuple[str, dict]:
    """(model config yaml text, VQGAN config dict) in the official schema."""
    tr, vq, text = pipe.transformer.config, pipe.vqvae.config, pipe.text_encoder.config
    side, n = tr.sample_size, len(vq.block_out_channels)
    resolution = side * 2 ** (n - 1)
    attn = [[resolution // 2 ** i] * 2 for i, t in enumerate(vq.down_block_types) if t.startswith("Attn")]
    ch = vq.block_out_channels[0]
    coder = dict(ch=ch, ch_mult=[c // ch for c in vq.block_out_channels], num_res_blocks=vq.layers_per_block,
                 z_channels=vq.latent_channels, resolution=[resolution, resolution], attn_resolutions=attn, dropout=0.0)
    vq_cfg = {"model": {"target": "image_synthesis.modeling.codecs.image_codec.patch_vqgan.PatchVQGAN", "params": {
        "n_embed": vq.num_vq_embeddings, "embed_dim": vq.vq_embed_dim, "quantizer_type": "EMAVQ", "trainable": True,
        "encoder_config": {"target": "image_synthesis.modeling.codecs.image_codec.patch_vqgan.Encoder",
                           "params": dict(coder, in_channels=3, out_ch=3, activate_output=False)},
        "decoder_config": {"target": "image_synthesis.modeling.codecs.image_codec.patch_vqgan.Decoder",
                           "params": dict(coder, out_ch=3)}}}}
    width = tr.num_attention_heads * tr.attention_head_dim
    model_yaml = f"""# written by benchmarks/official_reference.py in the schema of configs/ithq.yaml
model:
  target: image_synthesis.modeling.models.dalle.DALLE
  params:
    content_info: {{key: image}}
    condition_info: {{key: text}}
    content_codec_config:
      target: image_synthesis.modeling.codecs.image_codec.ema_vqvae.PatchVQVAE
      params:
        trainable: False
        token_shape: [{side}, {side}]
    condition_codec_config:
      target: image_synthesis.modeling.codecs.text_codec.tokenize.Tokenize
      params:
       context_length: {text.max_position_embeddings}
       add_start_and_end: True
       with_mask: True
       pad_value: 0
       clip_embedding: False
       tokenizer_config:
        target: image_synthesis.modeling.modules.clip.simple_tokenizer.SimpleTokenizer
        params:
          end_idx: 49152
    diffusion_config:
      target: image_synthesis.modeling.transformers.diffusion_transformer.DiffusionTransformer
      params:
        diffusion_step: {tr.num_embeds_ada_norm}
        alpha_init_type: 'alpha1'
        auxiliary_loss_weight: 5.0e-4
        adaptive_auxiliary_loss: True
        mask_weight: [1, 1]
        transformer_config:
          target: image_synthesis.modeling.transformers.transformer_utils.Text2ImageTransformer
          params:
            attn_type: 'selfcross'
            n_layer: {tr.num_layers}
            condition_seq_len: {text.max_position_embeddings}
            content_seq_len: {side * side}
            content_spatial_size: [{side}, {side}]
            n_embd: {width}
            condition_dim: {tr.cross_attention_dim}
            n_head: {tr.num_attention_heads}
            attn_pdrop: 0.0
            resid_pdrop: 0.0
            block_activate: GELU2
            timestep_type: 'adalayernorm'
            mlp_hidden_times: 4
            checkpoint: True
        condition_emb_config:
          target: image_synthesis.modeling.embeddings.clip_text_embedding.CLIPTextEmbedding
          params:
            clip_name: 'ViT-B/32'
            num_embed: {text.vocab_size}
            normalize: True
            pick_last_embedding: False
            keep_seq_len_dim: False
            additional_last_embedding: False
            embed_dim: {text.hidden_size}
        content_emb_config:
          target: image_synthesis.modeling.embeddings.dalle_mask_image_embedding.DalleMaskImageEmbedding
          params:
            num_embed: {tr.num_vector_embeds - 1}
            spatial_size: !!python/tuple [{side}, {side}]
            embed_dim: {width}
            trainable: True
            pos_emb_type: embedding
solver:
  optimizers_and_schedulers:
  - name: none
    optimizer:
      target: torch.optim.AdamW
      params:
        betas: !!python/tuple [0.9, 0.96]
"""
    return model_yaml, vq_cfg


def save(pipe, root: str | Path, ema_noise: float = 0.1, with_vqvae_file: bool = True) -> Path:
    """The release layout under `root`. `model` holds the transformer weights plus `ema_noise`
    noise, `ema` the exact ones (so reading the EMA copy is what makes them match)."""
    root = Path(root)
    for rel in PATHS.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    model_yaml, vq_cfg = configs(pipe)
    (root / PATHS["config"]).write_text(model_yaml)
    (root / PATHS["vqvae_config"]).write_text(yaml.safe_dump(vq_cfg))

    diffusion = {f"transformer.{k}": v for k, v in transformer_weights(pipe.transformer).items()}
    diffusion.update({f"condition_emb.{k}": v for k, v in clip_weights(pipe.text_encoder).items()})
    null = pipe.learned_classifier_free_sampling_embeddings
    if null.learnable:
        diffusion["empty_text_embed"] = null.embeddings.detach().double()
    diffusion["Lt_history"] = torch.zeros(pipe.transformer.config.num_embeds_ada_norm)  # an official buffer
    g = torch.Generator().manual_seed(11)
    noisy = {k: (v + ema_noise * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.is_floating_point() else v)
             for k, v in diffusion.items()}
    vq = vqgan_weights(pipe.vqvae)
    model = {f"transformer.{k}": v for k, v in noisy.items()}
    model.update({f"content_codec.enc.{k}": v for k, v in vq.items()
                  if k.startswith(("encoder.", "quant_conv.", "quantize."))})
    model.update({f"content_codec.dec.{k}": v for k, v in vq.items()
                  if k.startswith(("decoder.", "post_quant_conv.", "quantize."))})
    torch.save({"last_epoch": 3, "last_iter": 1000, "model": model, "ema": diffusion}, root / PATHS["checkpoint"])
    if with_vqvae_file:
        extra = {"quantize.cluster_size": torch.ones(pipe.vqvae.config.num_vq_embeddings),
                 "loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4)}  # the release keeps training leftovers
        torch.save({"model": {**vq, **extra}}, root / PATHS["vqvae"])
    return root


if __name__ == "__main__":
    raise SystemExit("write the official layout with: python -m benchmarks.diffusers_reference --shape official "
                     "--out DIR --official OTHER_DIR")
