"""THUNDER diffusion denoiser: model, torch samplers, losses, training, evaluation."""
