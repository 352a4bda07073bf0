"""The model: backbones (aliases, split packages, GGUF files), decoder LLMs and their LoRA adapters, the classifier
with its pooling heads, label-words head and attention, truncation, text fields and swapped fields as model inputs,
optimiser and LLRD, training tricks, ONNX export and its runtime. May import: core, competition."""
