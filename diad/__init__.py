"""DiAD: diffusion-based multi-class anomaly detection (AAAI-24). Pure torch core: no Ray, no pandas."""

__version__ = "0.1.0"
