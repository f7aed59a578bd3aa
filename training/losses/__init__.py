"""Losses of the ICM network: SIlog, Fuzzy C-means membership, the ICM loss and the criterion."""
from training.losses.criterion import DEFAULT_WEIGHTS, TERM_NAMES, ICMCriterion, icm_ramp
from training.losses.icm import icm_loss
from training.losses.matcher import hungarian_match, membership_cost
from training.losses.membership import downsample_membership, fcm_membership
from training.losses.silog import silog_loss

__all__ = [
    "DEFAULT_WEIGHTS",
    "TERM_NAMES",
    "ICMCriterion",
    "downsample_membership",
    "fcm_membership",
    "hungarian_match",
    "icm_loss",
    "icm_ramp",
    "membership_cost",
    "silog_loss",
]
