"""Graph conversions of the same weights: ORT's transformer optimizer, attention fusion, fp16 weight storage.

Each is a candidate for the conversion gate in :mod:`training.convert`: it ships only if it
agrees with the fp32 model on ≥ 99.5 % of every head's decisions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

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


def use_ms_domain(model: Any) -> None:
    """Declare the ``com.microsoft`` operator domain (ORT's contrib ops) unless the model already does."""
    from onnx import helper

    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def prune(graph: Any, nodes: list[Any] | None = None) -> None:
    """Make ``nodes`` (default: the graph's own, in topological order) the graph's nodes, keeping only
    those an output depends on, and drop every initializer no kept node reads."""
    needed = {o.name for o in graph.output}
    live: list[Any] = []
    for n in reversed(list(graph.node) if nodes is None else nodes):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    del graph.node[:]
    graph.node.extend(reversed(live))
    for init in list(graph.initializer):
        if init.name not in needed:
            graph.initializer.remove(init)


def _const(inits: dict[str, Any], name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]) if name in inits else None


def fuse_attention(src: Path, dst: Path, num_heads: int, mask_input: str = "attention_mask") -> dict[str, Any]:
    """Each unfused self-attention of the encoder → one ``com.microsoft.MultiHeadAttention`` node.

    ORT's transformer optimizer does not recognise the attention that torch's exporter writes for
    this encoder (its additive mask comes from a where/and chain), so the fp32 graph keeps
    ~14 nodes per layer for it (Reshape and Transpose of Q, K and V, MatMul, scale, mask, Softmax,
    MatMul, Transpose, Reshape), and the int8 graph too. Matched from each ``Softmax`` back and
    forward:

        Softmax(Mul(MatMul(T(R(q)), T'(R(k))), c) + mask) · T(R(v)) → T → R

    with T = Transpose(0, 2, 1, 3), T' = Transpose(0, 2, 3, 1), R = a Reshape to heads. It becomes
    ``MultiHeadAttention(q, k, v, bias, key_padding_mask, num_heads, scale=c)``: the biases of Q,
    K and V (``Add`` of a constant) move into the node, and the additive mask is replaced by the
    model's ``attention_mask`` as the key-padding mask (this encoder attends both ways; a padded key
    gets zero weight either way). A pattern that differs in any of these is left as it is. Works on
    the fp32 and on the int8 graph (the attention's own MatMuls are fp32 in both). Returns how many
    were fused and the op counts after."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    if mask_input not in {i.name for i in graph.input}:
        raise ValueError(f"{src}: no graph input {mask_input!r} for the key-padding mask")

    def only(name: str, op: str) -> Any:
        n = producer.get(name)
        return n if n is not None and n.op_type == op else None

    def perm(n: Any) -> list[int]:
        return next((list(a.ints) for a in n.attribute if a.name == "perm"), [])

    def next_op(name: str, op: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    mask = "fa_key_padding_mask"
    drop: set[int] = set()
    fused: dict[int, Any] = {}  # id(final Reshape) → MultiHeadAttention node
    biases: list[Any] = []
    for sm in [n for n in graph.node if n.op_type == "Softmax"]:
        add = only(sm.input[0], "Add")
        scaled = add and only(add.input[0], "Mul")
        qk = scaled and only(scaled.input[0], "MatMul")
        c = scaled and _const(inits, scaled.input[1])
        tq, tk = (qk and only(qk.input[0], "Transpose")), (qk and only(qk.input[1], "Transpose"))
        av = next_op(sm.output[0], "MatMul")
        tv = av and only(av.input[1], "Transpose")
        to = av and next_op(av.output[0], "Transpose")
        ro = to and next_op(to.output[0], "Reshape")
        if not all(n is not None for n in (add, scaled, qk, tq, tk, av, tv, to, ro)) or c is None or c.size != 1:
            continue
        if (perm(tq), perm(tk), perm(tv), perm(to)) != ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3], [0, 2, 1, 3]):
            continue
        views = [only(t.input[0], "Reshape") for t in (tq, tk, tv)]
        if any(v is None for v in views):
            continue
        qkv = [v.input[0] for v in views]
        bias = ""
        adds = [only(x, "Add") for x in qkv]
        consts = [a is not None and _const(inits, a.input[1]) for a in adds]
        if all(isinstance(b, np.ndarray) and b.ndim == 1 for b in consts) and \
                all(len(consumers[x]) == 1 for x in qkv):
            bias = f"fa{len(fused)}_qkv_bias"
            biases.append(numpy_helper.from_array(np.concatenate(consts).astype(np.float32), bias))
            qkv = [a.input[0] for a in adds]
            drop.update(id(a) for a in adds)
        fused[id(ro)] = helper.make_node(
            "MultiHeadAttention", [*qkv, bias, mask], [ro.output[0]], name=f"fused_attention_{len(fused)}",
            domain="com.microsoft", num_heads=num_heads, scale=float(c.reshape(())))
        drop.update(id(n) for n in (add, scaled, qk, tq, tk, sm, av, tv, to, ro, *views))
    nodes = [helper.make_node("Cast", [mask_input], [mask], name="fa_mask_int32", to=onnx.TensorProto.INT32)] \
        if fused else []
    for n in graph.node:
        if id(n) in fused:
            nodes.append(fused[id(n)])
        elif id(n) not in drop:
            nodes.append(n)
    graph.initializer.extend(biases)
    prune(graph, nodes)  # drops what only the old attention used (the additive-mask chain, the view shapes)
    use_ms_domain(model)
    onnx.save(model, str(dst))
    return {"fused_attention": len(fused), "op_counts": op_counts(dst)}
