"""Run an exported ONNX file with onnxruntime behind the interface jsegnext's evaluation uses.

``OnnxSegmentor`` has what ``jsegnext.engine.evaluation`` and ``jsegnext.apis.inference_model``
call on a model — ``encode_decode``, ``inference`` (whole or sliding window per ``test_cfg``),
``num_classes``, ``cfg``, ``eval``/``train`` — so sliding windows, flips and scales run around the
graph exactly as around the Jittor model (the same code: ``jsegnext.models.segmentor.run_inference``).
"""

from pathlib import Path

import numpy as np

from ..errors import DeployError, MissingDependencyError
from ..models.segmentor import EncoderDecoder, check_test_cfg, run_inference
from ..runtime import jt

MISSING = (
    '--backend onnxruntime needs the "onnxruntime" package: pip install -e ".[deploy]" (or pip install onnxruntime)'
)


class OnnxModelError(DeployError):
    """The ONNX file is missing, unreadable or does not fit the config."""


def _session(path, providers=None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError(MISSING) from None
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OnnxModelError(f"{path}: onnxruntime cannot load it ({first_line})") from None


class OnnxSegmentor:
    """An exported jsegnext network (image → logits at the input size) run by onnxruntime."""

    is_train = False

    def __init__(self, path, test_cfg=None, providers=None):
        self.path = str(path)
        self.session = _session(path, providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 4:
            raise OnnxModelError(f"{self.path}: not a jsegnext export (expects one NCHW input and one NCHW output)")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = inputs[0].shape  # ints where fixed, names where dynamic
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        classes = outputs[0].shape[1]
        self.num_classes = classes if isinstance(classes, int) else int(self.metadata.get("num_classes", 0)) or None
        self.test_cfg = check_test_cfg(test_cfg)

    def _check_input(self, shape):
        for want, got in zip(self.input_shape, shape):
            if isinstance(want, int) and want != got:
                raise OnnxModelError(
                    f"{self.path} was exported for input {'x'.join(map(str, self.input_shape))} and gets "
                    f"{'x'.join(map(str, shape))}: export with --dynamic (or --shape matching the test "
                    "pipeline / slide crop_size)"
                )

    def encode_decode(self, img):
        """Logits (N, classes, H, W) of a normalised image batch (N, 3, H, W) — a Jittor Var in and out."""
        array = np.ascontiguousarray(img.numpy() if isinstance(img, jt.Var) else img, dtype=np.float32)
        self._check_input(array.shape)
        return jt.array(self.session.run([self.output_name], {self.input_name: array})[0])

    __call__ = encode_decode

    def inference(self, img, out_size=None):
        """Logits in ``test_cfg``'s mode (whole / slide), resized to ``out_size``: as EncoderDecoder.inference."""
        return run_inference(self.encode_decode, img, self.test_cfg, out_size)

    predict_labels = EncoderDecoder.predict_labels  # argmax of inference(): the same code

    # evaluation switches a model between modes; an exported graph has only the inference one
    def eval(self):
        return self

    def train(self):
        return self

    def is_training(self):
        return False


def init_onnx_model(config, onnx_path, options=None, providers=None):
    """An :class:`OnnxSegmentor` for ``onnx_path`` with the config's test pipeline and ``model.test_cfg``:
    the ONNX counterpart of ``jsegnext.apis.init_model``."""
    from ..apis import load_config

    cfg = load_config(config, options)
    model_cfg = cfg.get("model") or {}
    model = OnnxSegmentor(onnx_path, model_cfg.get("test_cfg"), providers)
    classes = (model_cfg.get("decode_head") or {}).get("num_classes")
    if model.num_classes is not None and classes is not None and model.num_classes != classes:
        raise OnnxModelError(
            f"{onnx_path} predicts {model.num_classes} classes but the config's "
            f"model.decode_head.num_classes is {classes}"
        )
    if model.num_classes is None:
        model.num_classes = classes
    model.cfg = cfg
    return model
