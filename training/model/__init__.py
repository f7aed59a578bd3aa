"""The ICM depth network."""
from training.model.icm_net import UPDATE_MODES, ICMDepthNet

__all__ = ["ICMDepthNet", "UPDATE_MODES"]
