"""The SR networks, nothing but ``nn.Module`` s: :mod:`.rrdbnet` (ESRGAN's generator) and :mod:`.discriminator`
(the U-Net discriminator of Real-ESRGAN). Checkpoint layouts are converted in :mod:`hdm.sr.convert`."""
from .discriminator import UNetDiscriminatorSN
from .rrdbnet import PRESETS, RRDBNet

__all__ = ["RRDBNet", "PRESETS", "UNetDiscriminatorSN"]
