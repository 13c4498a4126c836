"""Vision backbones built from a patch embedding, token mixers and channel mixers, and pixel baselines."""


def build_model(model_config, *, image_size: int, channels: int, num_classes: int, rngs):
    """The backbone, or the pixel baseline named by `model.baseline`."""
    from patchscale.models.backbone import VisionBackbone
    from patchscale.models.baselines import PixelBaseline

    if model_config.baseline != "none":
        return PixelBaseline(model_config.baseline, model_config.baseline_hidden, image_size=image_size,
                             channels=channels, num_classes=num_classes, rngs=rngs)
    return VisionBackbone(model_config, image_size=image_size, channels=channels, num_classes=num_classes,
                          rngs=rngs)
