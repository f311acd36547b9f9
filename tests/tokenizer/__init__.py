"""SentencePiece tokenizers, from tokenizer.model files and from GGUF metadata."""
