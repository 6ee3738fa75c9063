"""insightface SCRFD face detector, run with ONNX Runtime from a local model pack.

Sample and Computation Redistribution for Efficient Face Detection -- Guo et al., ICLR 2022
(https://arxiv.org/abs/2105.04714). Original code and model packs:
https://github.com/deepinsight/insightface (``detection/scrfd``; the detection part of the
``buffalo_l`` / ``buffalo_s`` / ``antelopev2`` packs). Pre- and post-processing follow
``insightface.model_zoo.scrfd.SCRFD``: top-left letterbox, ``(x - 127.5) / 128`` RGB input,
anchor-free distance decoding of boxes and five landmarks at strides 8/16/32, NMS at IoU 0.4.

Nothing is downloaded: the detector reads ``<root>/<pack>/`` (insightface's own layout, e.g.
``~/.insightface/models/buffalo_l/det_10g.onnx``) or one ``.onnx`` file given as ``file``. The
insightface model packs are licensed for non-commercial research only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dflab.faces.detector import Detection, register_detector

DEFAULT_ROOT = "~/.insightface/models"
_PACK_FILES = ("det_10g.onnx", "det_2.5g.onnx", "det_500m.onnx", "scrfd_*.onnx", "det_*.onnx")


def sample_pack_root() -> Path:
    """Where ``make install`` puts the ``scrfd_2.5g`` pack (SCRFD-2.5G from the ``scrfd`` sdist)."""
    return Path(sys.prefix) / "share" / "dflab" / "insightface"


def find_scrfd_model(root: str | os.PathLike[str], pack: str) -> Path:
    """The SCRFD ``.onnx`` of model pack ``pack`` under ``root``.

    Raises:
        FileNotFoundError: no pack folder or no detection model in it; the message says where
            the files should go and how to point dflab at them.
    """
    folder = Path(root).expanduser() / pack
    for pattern in _PACK_FILES:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    what = "has no SCRFD detection model (det_*.onnx)" if folder.is_dir() else "does not exist"
    raise FileNotFoundError(
        f"insightface model pack {pack!r} not found: {folder} {what}. Unpack the pack there "
        f"(e.g. buffalo_l.zip from the insightface model zoo gives {folder.parent}/buffalo_l/"
        "det_10g.onnx; the packs are for non-commercial research only), or set "
        "faces.detector_options.root / .pack to where it is, or .file to a SCRFD .onnx file. "
        "dflab downloads nothing; the default detector `blazeface` needs no pack."
    )


def distance_decode(centres: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Decode SCRFD distance predictions: boxes from ``(N, 4)``, points from ``(N, 2K)``."""
    if distances.shape[1] == 4:
        return np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)
    return (distances.reshape(len(distances), -1, 2) + centres[:, None, :]).reshape(
        len(distances), -1
    )


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first."""
    order = list(np.argsort(-scores))
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.asarray(order)
        w = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1
        h = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        overlap = inter / (area[i] + area[rest] - inter)
        order = [int(j) for j in rest[overlap <= iou]]
    return keep


@register_detector("scrfd")
class ScrfdDetector:
    """insightface SCRFD (ONNX Runtime; CUDA when ``onnxruntime-gpu`` and a GPU are present).

    Args:
        root: folder holding insightface model packs (``~`` is expanded).
        pack: model pack name, a folder under ``root`` (``buffalo_l`` holds ``det_10g.onnx``).
        file: a SCRFD ``.onnx`` file to use instead of ``root``/``pack``.
        size: network input side for models with a dynamic input (fixed ones use their own).
        min_score: score below which candidates are dropped.
        nms_iou: NMS overlap threshold.
        threads: ONNX Runtime intra-op threads (1 when the index runs one process per core).
        device: ``cpu`` or ``cuda``.

    Raises:
        FileNotFoundError: the model pack or file is missing (at construction, so a run fails
            before any work; the message says where to put it).
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        pack: str = "buffalo_l",
        file: str | None = None,
        size: int = 640,
        min_score: float = 0.5,
        nms_iou: float = 0.4,
        threads: int = 1,
        device: str = "cpu",
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if size < 32 or size % 32:
            raise ValueError(f"size must be a positive multiple of 32, got {size}")
        if file is not None:
            path = Path(file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"SCRFD model file not found: {path} (faces.detector_options.file)")
        else:
            path = find_scrfd_model(root, pack)
        self.model_file = path.resolve()
        self.size = int(size)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.threads = int(threads)
        self.device = device
        self._session: Any = None

    @property
    def name(self) -> str:
        """Model file stem plus settings, e.g. ``scrfd-det_10g-640-s0.5``."""
        return f"scrfd-{self.model_file.stem}-{self.size}-s{self.min_score:g}"

    def __repr__(self) -> str:
        return f"ScrfdDetector({self.name}, {self.model_file})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self.device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(self.model_file), opts, providers=providers)
        shape = session.get_inputs()[0].shape
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        self._input = session.get_inputs()[0].name
        self._hw = (int(shape[2]), int(shape[3])) if fixed else (self.size, self.size)
        outputs = len(session.get_outputs())
        if outputs != 9:
            raise ValueError(
                f"{self.model_file}: expected a SCRFD model with landmarks (9 outputs: scores, "
                f"boxes and keypoints at strides 8, 16, 32), got {outputs} outputs"
            )
        self._centres = {
            stride: self._anchor_centres(stride) for stride in (8, 16, 32)
        }
        self._session = session

    def _anchor_centres(self, stride: int) -> np.ndarray:
        h, w = self._hw[0] // stride, self._hw[1] // stride
        ys, xs = np.mgrid[:h, :w]
        centres = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
        return np.repeat(centres, 2, axis=0)  # two anchors per location

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find faces in an RGB ``uint8`` image ``(H, W, 3)``."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
            )
        if self._session is None:
            self._load()
        height, width = self._hw
        h, w = image.shape[:2]
        if h / w > height / width:  # insightface's letterbox, to the pixel
            nh, nw = height, max(1, int(height / (h / w)))
        else:
            nw, nh = width, max(1, int(width * (h / w)))
        scale = nh / h
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self._session.run(None, {self._input: blob})
        boxes, scores, points = [], [], []
        for k, stride in enumerate((8, 16, 32)):
            score = outs[k].reshape(-1)
            keep = np.where(score >= self.min_score)[0]
            if not len(keep):
                continue
            centres = self._centres[stride][keep]
            boxes.append(distance_decode(centres, outs[k + 3].reshape(-1, 4)[keep] * stride))
            points.append(distance_decode(centres, outs[k + 6].reshape(-1, 10)[keep] * stride))
            scores.append(score[keep])
        if not scores:
            return []
        all_boxes = np.concatenate(boxes) / scale
        all_points = np.concatenate(points).reshape(-1, 5, 2) / scale
        all_scores = np.concatenate(scores)
        out = []
        for i in nms(all_boxes, all_scores, self.nms_iou):
            box = np.clip(all_boxes[i], 0, [w, h, w, h]).astype(np.float32)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            out.append(
                Detection(
                    box=box,
                    score=float(all_scores[i]),
                    landmarks=all_points[i].astype(np.float32),
                )
            )
        return out
