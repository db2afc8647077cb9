"""efm_policy: the EFM policy model (torch, training side), action and steps-to-go tokenizers, ONNX
export, the ONNX Runtime policy runtime (no torch) and the 10 Hz policy node. Built by the Stage 1 issue."""
