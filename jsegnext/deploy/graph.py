"""A small ONNX graph builder: named nodes and constants, and the few ops whose form changes with the opset."""

import numpy as np

from ..errors import MissingDependencyError

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the core package does not need onnx; export_onnx says how to get it
    onnx = None

#: Opsets the exporter writes: 13 (Softmax on one axis, Resize with an empty roi) up to the newest
#: that the installed ``onnx`` knows (onnxruntime may support fewer).
MIN_OPSET = 13

MISSING = 'ONNX export needs the "onnx" package: pip install -e ".[deploy]" (or pip install onnx)'


class GraphBuilder:
    """Collects nodes and initializers; every value gets a unique name derived from a hint
    (the module path, e.g. ``backbone.block1.0.attn.proj_1``)."""

    def __init__(self, opset):
        if onnx is None:
            raise MissingDependencyError(MISSING)
        self.opset = opset
        self.nodes, self.initializers = [], []
        self._used = set()
        self._constants = {}

    def unique(self, hint):
        name, k = hint, 1
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def const(self, array, hint, dtype=np.float32):
        """A constant tensor (an initializer); small constants of the same value are shared."""
        array = np.ascontiguousarray(array, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 16 else None
        if key in self._constants:
            return self._constants[key]
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        if key is not None:
            self._constants[key] = name
        return name

    def ints(self, values, hint="ints"):
        return self.const(np.asarray(values, np.int64), hint, np.int64)

    def op(self, op_type, inputs, hint, **attrs):
        """Append one node with a single output; returns the output's name."""
        out = self.unique(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    # --------------------------------------------------------------- ops whose form depends on the opset
    def reduce_mean(self, x, axes, hint):
        if self.opset >= 18:  # axes became an input
            return self.op("ReduceMean", [x, self.ints(axes, "axes")], hint, keepdims=1)
        return self.op("ReduceMean", [x], hint, axes=list(axes), keepdims=1)

    def dims(self, x, start, end, hint):
        """``Shape(x)[start:end]`` as a 1-D int64 tensor."""
        shape = self.op("Shape", [x], f"{hint}.shape")
        return self.op("Slice", [shape, self.ints([start]), self.ints([end]), self.ints([0])], f"{hint}.dims")

    def resize_bilinear(self, x, like, hint):
        """Bilinear resize of NCHW ``x`` to the height and width of ``like`` (a value name), PyTorch's
        ``align_corners=False``: ONNX ``half_pixel`` coordinates (negative source positions clamp to 0)."""
        sizes = self.op("Concat", [self.dims(x, 0, 2, hint), self.dims(like, 2, 4, hint)], f"{hint}.sizes", axis=0)
        return self.op("Resize", [x, "", "", sizes], hint, mode="linear", coordinate_transformation_mode="half_pixel")

    # --------------------------------------------------------------- the model
    def model(self, inputs, outputs, metadata=None, name="jsegnext"):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        # The opset's own IR version, not the newest onnx knows, so that older onnxruntime builds read it.
        model = helper.make_model(
            graph, opset_imports=opsets, producer_name="jsegnext", ir_version=helper.find_min_ir_version_for(opsets)
        )
        for key, value in (metadata or {}).items():
            model.metadata_props.add(key=key, value=str(value))
        return model


def tensor_info(name, shape):
    """A float32 graph input/output; ``shape`` entries are ints or symbolic names (str)."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
