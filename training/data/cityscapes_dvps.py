"""Cityscapes-DVPS (ViP-DeepLab) loader, also used for the synthetic scenes written in its layout.

Layout (ViP-DeepLab's DVPS preparation; docs/data.md): ROOT/video_sequence/{train,val}/ holding, per frame,
    SSSSSS_FFFFFF_<city>_<seq>_<frame>_leftImg8bit.png             8-bit RGB
    SSSSSS_FFFFFF_<city>_<seq>_<frame>_gtFine_instanceTrainIds.png trainId * 1000 + n, or a bare trainId
    SSSSSS_FFFFFF_<city>_<seq>_<frame>_depth.png                   uint16, metres * 256, 0 = invalid
    SSSSSS_FFFFFF_<city>_<seq>_<frame>_camera.json                 optional, Cityscapes camera format
The panoptic PNG is read as single-channel uint16 (what Cityscapes-VPS' create_panoptic_labels.py and
cityscapesscripts write). A 3-channel 8-bit PNG is decoded the way deeplab2's build_dvps_data.py decodes
one: R = class, 256 G + B = instance number (panoptic = R * 1000 + 256 G + B).

The instance convention is cityscapesscripts' (json2instanceImg, used by createTrainIdInstanceImgs.py, whose
output Cityscapes-DVPS copies): the n-th instance of a class (n = 0, 1, ...) is trainId * 1000 + n, so the
first car of a frame is 13000. A value below 1000 is a bare class id: stuff, void (255) or a group region
(cargroup, persongroup...), which covers several objects and is no instance. Thing trainIds 11-18 at
1000 and above become instances. Without a camera.json
the nominal Cityscapes intrinsics (fx 2262.52, fy 2265.30, cx 1096.98, cy 513.14 at 2048 x 1024) are
scaled to the image size.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .base import DVPSFrames, check_same_size
from .io import read_depth, read_rgb
from .items import CITYSCAPES_FIRST_THING

SUFFIX_IMAGE = DVPSFrames.IMAGE_SUFFIX
SUFFIX_PANOPTIC = "_gtFine_instanceTrainIds.png"
SUFFIX_DEPTH = "_depth.png"
SUFFIX_CAMERA = "_camera.json"
LABEL_DIVISOR = 1000
THING_TRAIN_IDS = range(11, 19)
NOMINAL_K = np.array([[2262.52, 0.0, 1096.98], [0.0, 2265.30, 513.137], [0.0, 0.0, 1.0]])
NOMINAL_SIZE = (1024, 2048)


def read_panoptic(path) -> np.ndarray:
    """int64 [H, W] panoptic ids (trainId * 1000 + instance) from a uint16 or 3-channel 8-bit PNG
    (R = trainId, 256 G + B = instance, as deeplab2's DVPS converter reads it)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: file not found")
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"{path}: cannot be decoded as a PNG")
    if array.ndim == 2 and array.dtype == np.uint16:
        return array.astype(np.int64)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        b, g, r = (array[..., i].astype(np.int64) for i in range(3))  # OpenCV reads BGR
        if int((256 * g + b).max(initial=0)) >= LABEL_DIVISOR:
            raise ValueError(f"{path}: 3-channel panoptic PNG with instance numbers (256 G + B) of 1000 or more "
                             "cannot be written as trainId * 1000 + instance")
        return np.where(256 * g + b > 0, r * LABEL_DIVISOR + 256 * g + b, r)
    raise ValueError(f"{path}: expected a single-channel uint16 panoptic PNG (trainId * 1000 + instance), "
                     f"got {array.dtype} with shape {array.shape}")


def panoptic_to_instances(panoptic: np.ndarray) -> tuple[np.ndarray, dict]:
    """(instance keys [H, W] with 0 = none, {key: THING_CLASSES index}); a key is the panoptic id itself.

    Values >= 1000 are trainId * 1000 + n (n from 0: 13000 is a car); values < 1000 are bare class ids
    (stuff, void, group/crowd regions) and never an instance.
    """
    semantic = panoptic // LABEL_DIVISOR  # 0 for every bare class id, which is no thing trainId
    is_thing = (semantic >= THING_TRAIN_IDS.start) & (semantic < THING_TRAIN_IDS.stop)
    instances = np.where(is_thing, panoptic, 0)
    classes = {int(k): int(k // LABEL_DIVISOR - CITYSCAPES_FIRST_THING) for k in np.unique(instances) if k}
    return instances, classes


def read_camera_json(path, size) -> np.ndarray:
    """K [3, 3] from a Cityscapes camera json ({"intrinsic": {"fx", "fy", "u0", "v0"}})."""
    try:
        intrinsic = json.loads(Path(path).read_text())["intrinsic"]
        fx, fy, u0, v0 = (float(intrinsic[k]) for k in ("fx", "fy", "u0", "v0"))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: expected {{\"intrinsic\": {{\"fx\", \"fy\", \"u0\", \"v0\"}}}}: {error}") from None
    return np.array([[fx, 0.0, u0], [0.0, fy, v0], [0.0, 0.0, 1.0]])


def nominal_intrinsics(size) -> np.ndarray:
    K = NOMINAL_K.copy()
    K[0] *= size[1] / NOMINAL_SIZE[1]
    K[1] *= size[0] / NOMINAL_SIZE[0]
    return K


class CityscapesDVPS(DVPSFrames):
    """Frames of ROOT/video_sequence/SPLIT/, sorted by name; items as in training/data/items.py."""

    def __init__(self, root, split: str = "train", augment: bool = False, crop_size=None,
                 scale_range=(1.0, 1.0), min_depth: float = 1e-3, max_depth: float = 88.0):
        super().__init__(root, split, "Cityscapes-DVPS", (SUFFIX_PANOPTIC, SUFFIX_DEPTH), augment, crop_size,
                         scale_range, min_depth, max_depth)

    def load(self, index: int) -> dict:
        prefix = self.prefixes[index]
        image = read_rgb(prefix + SUFFIX_IMAGE)
        depth = read_depth(prefix + SUFFIX_DEPTH)
        panoptic = read_panoptic(prefix + SUFFIX_PANOPTIC)
        check_same_size(prefix, image, depth=depth, panoptic=panoptic)
        instances, classes = panoptic_to_instances(panoptic)
        camera = Path(prefix + SUFFIX_CAMERA)
        K = read_camera_json(camera, image.shape[:2]) if camera.is_file() else nominal_intrinsics(image.shape[:2])
        return {"image": image, "depth": depth, "instances": instances, "classes": classes, "K": K}
