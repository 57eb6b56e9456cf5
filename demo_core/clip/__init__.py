"""CLIP: the model and its zero-shot use, the contrastive loss, the mini-CLIP architecture, the B×B matrix."""
