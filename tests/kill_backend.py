"""The real backend, except that each training's worker is SIGKILLed once, right after its first checkpoint.

`starts.txt` in the training dir records the checkpoint step each train() call found (and resumed from).
"""

import os
import signal
from pathlib import Path

from diad import checkpoint
from diad.sweep.backend import DiadBackend


class KillOnceBackend(DiadBackend):
    def train(self, run_cfg, out_dir, cache_dir, on_checkpoint=None):
        latest = checkpoint.latest_checkpoint(Path(out_dir) / "checkpoints")
        with open(Path(out_dir) / "starts.txt", "a") as f:
            f.write(f"{checkpoint.read_state(latest)['step'] if latest else 0}\n")

        def report_then_die(step, checkpoint_dir, metrics):
            if on_checkpoint is not None:
                on_checkpoint(step, checkpoint_dir, metrics)
            marker = Path(out_dir) / "killed-at"
            if not marker.exists():
                marker.write_text(str(step))
                os.kill(os.getpid(), signal.SIGKILL)

        return super().train(run_cfg, out_dir, cache_dir, report_then_die)
