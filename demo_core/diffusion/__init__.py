"""DDPM and DDIM: the math beside the slides, the samplers, the models, and what the tab shows."""
