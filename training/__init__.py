"""Training pipeline: data → fine-tune (torch) → ONNX export → int8 → evaluation → bundle."""
