"""The Model API on random and tiny models: state, batching, sampling, text, bad arguments."""
