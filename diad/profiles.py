"""Model profiles: every default of a run, per profile, in one place (torch-free).

A profile is data, not a code path: `cpu` keeps the paper's structure at 64 px with narrow channels and
trains from scratch on a CPU in minutes; `paper` is SD-1.5 at 256 px, as in the paper. The values fill
the sections of a run config (diad/config.py) under the user's own values, so an explicit value wins.
The architecture switches (model.sg.*) come from the variant (diad/models/config.py VARIANTS).
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "model": {
            "image_size": 64,
            "pretrained_dir": None,
            # 3 levels: x4 downsampling, 64 px -> 16x16x4
            "autoencoder": {"block_out_channels": [16, 32, 32], "layers_per_block": 1, "latent_channels": 4,
                            "norm_num_groups": 8, "latent_scale": 1.0},
            # 3 levels instead of SD's 4 so the injected levels are not starved: SGEB4 = the skips of the 4x4
            # level (64 channels), SGEB3 those of the 8x8 level (32) on the 16x16x4 latent (4 levels gave a
            # 2x2x32 SGEB4 the trained UNet learned to ignore). docs/cpu-profile-design.md.
            # No pretrained SD here, so nothing to protect by freezing its encoder half: a frozen
            # random encoder starves the model of capacity.
            "unet": {"block_out_channels": [16, 32, 64], "layers_per_block": 2, "cross_attention_dim": 16,
                     "attention_heads": 1, "norm_num_groups": 8, "context_tokens": 4, "encoder_trainable": True},
            "sg": {"hint_channels": [8, 16, 32]},
            "pixel_unet": {"block_out_channels": [16, 32, 32, 32], "layers_per_block": 2, "norm_num_groups": 8},
        },
        # docs/cpu-profile-design.md: every value below with the measurement behind it.
        # 300 steps: the two-seed main job's 30-minute budget; t_max 600 >= eval T 400
        "train": {"steps": 300, "batch_size": 8, "lr": 2e-3, "weight_decay": 0.0, "checkpoint_every": 200,
                  "val_batches": 2, "t_max": 600,
                  "autoencoder": {"steps": 400, "lr": 2e-3, "batch_size": 8, "kl_weight": 1e-6,
                                  "perceptual_weight": 0.1, "weight_decay": 0.0, "seed": 0}},
        # T 400 (<= t_max) scored above 600 on both sets; at 64 px the authors' 8x8 pooling would average over
        # 57-px windows (the whole image), and sigma 4 is 3x the paper's relative smoothing.
        "eval": {"batch_size": 16, "forward_steps": 400, "score_rule": "max", "sigma": 2.0},
    },
    "paper": {
        "model": {
            "image_size": 256,
            "pretrained_dir": None,
            "vae_posterior": "sample",  # the authors sample z0 from the posterior at train and test time
            "autoencoder": {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,  # SD KL-f8
                            "latent_channels": 4, "norm_num_groups": 32, "latent_scale": 0.18215},
            "unet": {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,  # SD-1.5
                     "cross_attention_dim": 768, "attention_heads": 8, "norm_num_groups": 32, "context_tokens": 77,
                     "encoder_trainable": False},  # the paper: SD encoder, middle block and time embedding frozen
            "sg": {"hint_channels": [16, 32, 96, 256]},  # ControlNet's hint path for f8
            "pixel_unet": {"block_out_channels": [128, 128, 256, 256, 512, 512], "layers_per_block": 2,
                           "norm_num_groups": 32},  # DDPM-256 baseline
        },
        # the authors' effective batch: 12 x accumulate_grad_batches 4 = 48
        "train": {"epochs": 1000, "batch_size": 12, "grad_accum": 4, "lr": 1e-5, "checkpoint_every": 1000,
                  "autoencoder": {"steps": 2000, "lr": 1e-5}},
        # sigma 5: the paper's (and the authors' test.py) smoothing at 256 px; their DDIM grid
        "eval": {"batch_size": 8, "sigma": 5.0, "ddim_grid": "authors"},
    },
}
