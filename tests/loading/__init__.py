"""Reading checkpoints: safetensors, GGUF, Hugging Face folders, and what bad files raise."""
