"""Vision backbones built from a patch embedding, token mixers and channel mixers."""
