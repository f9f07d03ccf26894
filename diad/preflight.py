"""Checks that need no training, run before any: evaluation settings, so a run never trains and then fails.

`check_eval_settings` is called by `diad train` and `diad evaluate` before they load data, and by the sweep core
for every grid point before the first trial starts.
"""

from __future__ import annotations

from pathlib import Path

from diad.errors import DiadError


def check_eval_settings(eval_cfg, source: str = "config") -> None:
    """Backbone known and its weights present, layers in range, ddim_steps <= forward_steps; else DiadError.

    Messages read "source: eval.<key>: problem", the form the sweep layer maps back to a spec line.
    """
    from diad.scoring import backbones as bb  # timm: imported only when a check runs

    if eval_cfg.ddim_steps > eval_cfg.forward_steps:
        raise DiadError(f"{source}: eval.ddim_steps: {eval_cfg.ddim_steps} DDIM steps cannot fit in "
                        f"eval.forward_steps={eval_cfg.forward_steps} (T); expected ddim_steps <= forward_steps",
                        key="eval.ddim_steps")
    try:
        spec = bb._spec(eval_cfg.backbone)
    except DiadError as e:
        raise DiadError(f"{source}: eval.backbone: {e}", key="eval.backbone") from None
    try:
        bb._check_layers(eval_cfg.layers)
    except DiadError as e:
        raise DiadError(f"{source}: eval.layers: {e}", key="eval.layers") from None
    weights = eval_cfg.backbone_weights
    if weights is not None and str(weights) == bb.RANDOM:
        return
    if weights is not None:
        if not Path(weights).expanduser().is_file():
            raise DiadError(f"{source}: eval.backbone_weights: {weights} is not a file; expected the local weights "
                            f"of backbone '{eval_cfg.backbone}' (.safetensors or .pth)", key="eval.backbone_weights")
        return
    if spec.packaged or eval_cfg.allow_random_backbone:
        return
    if bb._find_local_weights(eval_cfg.backbone, spec.timm_name) is None:
        raise DiadError(f"{source}: eval.backbone: '{eval_cfg.backbone}' has no local weights: set "
                        f"eval.backbone_weights=PATH or put {eval_cfg.backbone}.safetensors in $DIAD_WEIGHTS_DIR "
                        f"(now {bb.weights_dir()})", key="eval.backbone")
