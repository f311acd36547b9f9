"""Agreement with code we did not write: official recurrentgemma, transformers, llama.cpp."""
