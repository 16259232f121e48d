"""Encoder–decoder segmentor: MSCAN features → LightHamHead logits → full-size logits."""

from ..constants import IGNORE_INDEX
from ..ops.resize import cross_entropy, resized_cross_entropy  # noqa: F401  (cross_entropy: re-exported)
from ..runtime import jt
from .ham_head import LightHamHead
from .layers import resize_bilinear
from .mscan import MSCAN

nn = jt.nn


class EncoderDecoder(nn.Module):
    """SegNeXt segmentor.

    ``test_cfg``: ``dict(mode='whole')`` or ``dict(mode='slide', crop_size=(h, w), stride=(h, w))``.
    """

    def __init__(self, backbone, decode_head, test_cfg=None):
        super().__init__()
        self.backbone = MSCAN(**backbone)
        self.decode_head = LightHamHead(**decode_head)
        self.test_cfg = check_test_cfg(test_cfg)

    @property
    def num_classes(self):
        return self.decode_head.num_classes

    def extract_feat(self, img):
        return self.backbone(img)

    def encode_decode(self, img):
        """Logits bilinearly resized to the input's size."""
        return resize_bilinear(self.decode_head(self.extract_feat(img)), img.shape[2:])

    def execute(self, img):
        return self.encode_decode(img)

    def loss(self, img, label, ignore_index=IGNORE_INDEX):
        """Training loss: logits resized to the label's size, cross entropy over the pixels whose
        label is not ``ignore_index``, averaged over all pixels (mmseg's ``avg_non_ignore=False``)."""
        return resized_cross_entropy(self.decode_head(self.extract_feat(img)), label, ignore_index)

    def slide_inference(self, img):
        """Average the logits of overlapping ``crop_size`` windows placed every ``stride`` pixels."""
        return slide_inference(self.encode_decode, img, self.test_cfg["crop_size"], self.test_cfg["stride"])

    def inference(self, img, out_size=None):
        """Logits for ``img`` in the configured test mode, resized to ``out_size`` (default: input size)."""
        return run_inference(self.encode_decode, img, self.test_cfg, out_size)

    def predict_labels(self, img, out_size=None):
        """Label map (N, H, W) int32: the argmax over classes of ``inference(img, out_size)``."""
        return self.inference(img, out_size).argmax(dim=1)[0].int32()


# Test-time inference around any ``encode_decode`` (NCHW image Var → logits Var at the image's
# size): the Jittor model's own, or an exported graph's (jsegnext.deploy.OnnxSegmentor).


def check_test_cfg(test_cfg):
    """``test_cfg`` as a dict, checked: ``mode`` 'whole' (default) or 'slide' with crop_size and stride."""
    test_cfg = dict(test_cfg or {"mode": "whole"})
    mode = test_cfg.get("mode", "whole")
    if mode not in ("whole", "slide"):
        raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {mode!r}")
    if mode == "slide" and not {"crop_size", "stride"} <= set(test_cfg):
        raise ValueError("test_cfg with mode='slide' needs crop_size and stride")
    return test_cfg


def run_inference(encode_decode, img, test_cfg, out_size=None):
    """Logits of ``img`` in ``test_cfg``'s mode (whole or slide), resized to ``out_size`` if given."""
    if test_cfg.get("mode", "whole") == "slide":
        logits = slide_inference(encode_decode, img, test_cfg["crop_size"], test_cfg["stride"])
    else:
        logits = encode_decode(img)
    if out_size is not None and tuple(out_size) != tuple(logits.shape[2:]):
        logits = resize_bilinear(logits, out_size)
    return logits


def slide_inference(encode_decode, img, crop_size, stride):
    """Average ``encode_decode``'s logits over overlapping ``crop_size`` windows every ``stride`` pixels."""
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    h, w = img.shape[2:]
    logits, count = None, jt.zeros((1, 1, h, w))
    for y1, x1, y2, x2 in slide_windows(h, w, crop_h, crop_w, stride_h, stride_w):
        padding = (x1, w - x2, y1, h - y2)
        window = jt.nn.pad(encode_decode(img[:, :, y1:y2, x1:x2]), padding)
        logits = window if logits is None else logits + window
        count += jt.nn.pad(jt.ones((1, 1, y2 - y1, x2 - x1)), padding)
    return logits / count


def slide_windows(h, w, crop_h, crop_w, stride_h, stride_w):
    """(y1, x1, y2, x2) of the sliding windows covering an h×w image (mmseg's placement)."""
    rows = max(h - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(w - crop_w + stride_w - 1, 0) // stride_w + 1
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride_h + crop_h, h), min(c * stride_w + crop_w, w)
            yield max(y2 - crop_h, 0), max(x2 - crop_w, 0), y2, x2
