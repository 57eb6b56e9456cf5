"""Text -> image search over an image collection: its index, the builder that fills it, and queries."""
