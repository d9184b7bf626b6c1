"""From a trained generator to synthetic sets on disk: sampling, sets, cards, ONNX, memorisation."""
