"""Graph conversions of the same weights: ORT's transformer optimizer and fp16 weight storage.

Both are candidates for the conversion gate in :mod:`training.convert`: they ship only if they
agree with the fp32 model on ≥ 99.5 % of every head's decisions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

#: fused op types the BERT optimizer can produce, counted after optimisation
FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "LayerNormalization",
             "MatMul", "Add")


def op_counts(path: Path) -> dict[str, int]:
    """Node count per op type (with domain for the contrib ops)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def optimize_bert(src: Path, dst: Path, num_heads: int, hidden: int) -> dict[str, int]:
    """ORT transformer optimizer, model type bert, exact GELU (no approximation), fp32.

    Returns the op counts of the optimised graph. ``opt_level=0``: only the Python fusions are
    applied; ORT itself applies its level-99 optimisations when the session loads.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    opts = FusionOptions("bert")
    opts.enable_gelu_approximation = False
    model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                           optimization_options=opts, opt_level=0, use_gpu=False)
    dst.parent.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(dst))
    return op_counts(dst)


#: fp16_storage converts float32 initializers of at least this many elements
FP16_MIN_ELEMENTS = 65536


def fp16_stored(a: np.ndarray, min_elements: int = FP16_MIN_ELEMENTS) -> np.ndarray:
    """The float32 values :func:`fp16_storage` serves for the tensor ``a``: rounded through float16
    when it is large enough to be stored as float16 (``min_elements`` 0: never)."""
    return a.astype(np.float16).astype(np.float32) if min_elements and a.size >= min_elements else a


def fp16_storage(src: Path, dst: Path, min_elements: int = FP16_MIN_ELEMENTS) -> dict[str, int]:
    """Store every float32 initializer of at least ``min_elements`` as float16 behind a Cast to
    float32: half the file, same fp32 compute (ORT folds the Casts into fp32 weights at load)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts, stored = [], 0
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        arr = numpy_helper.to_array(init)
        name = init.name
        half = name + ".fp16"
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), half))
        casts.append(helper.make_node("Cast", [half], [name], name=f"fp16_storage_{len(casts)}",
                                      to=onnx.TensorProto.FLOAT))
        stored += arr.size
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {"fp16_tensors": len(casts), "fp16_elements": int(stored)}
