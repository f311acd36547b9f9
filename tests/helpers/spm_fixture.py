"""Train tiny SentencePiece models for the tests (no network, no model download needed).

The settings mirror the trainer spec of Gemma's 256k tokenizer (docs/model-math.md,
'Tokenizer'): BPE, byte fallback, split digits, no dummy prefix, no whitespace collapsing,
whitespace-only pieces allowed, identity normalisation, ids pad=0 eos=1 bos=2 unk=3 (Gemma's
piece names), ``<mask>`` as a control piece (id 4) and the chat turn markers as extra pieces
(ids 5 and 6).
"""

from __future__ import annotations

import io
import os
import random

TURN_TOKENS = ["<start_of_turn>", "<end_of_turn>"]

_WORDS = (
    "the quick brown fox jumps over lazy dog model token tensor weight layer attention "
    "recurrent gate state cache prompt reply user hello world python native engine sample "
    "greedy batch vector matrix shape float value index return while import class function "
    "print error string number list dict none true false data file path read write open close "
    "small large first last next step time memory thread kernel block local window stream"
).split()

_CODE = [
    "def {w}({v}):\n    return {v} + {n}",
    "for i in range({n}):\n    {w}[i] = {v} * 2",
    "if {v} == {n}:\n\tprint('{w}')",
    "class {W}:\n    def __init__(self, {v}):\n        self.{v} = {v}",
    "x = [{n}, {n2}, {n3}]  # {w}",
    "{v} = {{'{w}': {n}, '{w2}': {n2}}}",
    "int {v} = {n}; // {w}",
    "while ({v} < {n}) {{ {v}++; }}",
    "return {v}.get('{w}', None)",
    "    {w}_{w2} = np.zeros(({n}, {n2}))",
    "<div class=\"{w}\">{w2}</div>",
    "a < b and {v} > {n}",
]

_PROSE = [
    "The {w} and the {w2} are {n} times faster.",
    "We measured {n}.{n2} ms per {w} on {n3} threads.",
    "A {w} {w2}, then another {w}; finally the {w2}!",
    "Is the {w} ready? Yes, {n} of {n3} {w2}s are done.",
    "Hello, {W}: your {w} is {n}% complete.",
    "  indented {w}   with   extra    spaces  ",
    "{W} {W2} said: \"{w} {w2}\" (page {n}).",
]


def corpus_lines(count: int = 400, seed: int = 1234) -> list[str]:
    """A deterministic list of varied English and code lines (some with newlines and tabs)."""
    rng = random.Random(seed)
    lines: list[str] = []
    for k in range(count):
        template = rng.choice(_CODE if k % 2 else _PROSE)
        w, w2 = rng.choice(_WORDS), rng.choice(_WORDS)
        fields = {
            "w": w,
            "w2": w2,
            "W": w.capitalize(),
            "W2": w2.capitalize(),
            "v": rng.choice(["x", "y", "idx", "val", "acc", "buf"]),
            "n": rng.randint(0, 999),
            "n2": rng.randint(0, 99999),
            "n3": rng.randint(1, 64),
        }
        lines.append(template.format(**fields))
    return lines


def train_tiny_spm(
    directory: str | os.PathLike,
    *,
    name: str = "tiny_spm",
    vocab_size: int = 400,
    turn_tokens_as_control: bool = False,
    gemma_like: bool = True,
) -> str:
    """Train a tiny BPE SentencePiece model in ``directory``; return the ``.model`` path.

    ``turn_tokens_as_control`` stores ``<start_of_turn>``/``<end_of_turn>`` as CONTROL pieces
    instead of USER_DEFINED ones.  ``gemma_like=False`` keeps SentencePiece's default
    normaliser (dummy prefix, whitespace collapsing, NFKC) to exercise other code paths.
    """
    import sentencepiece as spm

    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(os.fspath(directory), name)
    if turn_tokens_as_control:
        extra = {"control_symbols": ["<mask>"] + TURN_TOKENS}
    else:
        extra = {"control_symbols": ["<mask>"], "user_defined_symbols": TURN_TOKENS}
    normaliser = (
        dict(
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            normalization_rule_name="identity",
        )
        if gemma_like
        else {}
    )
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
        **normaliser,
        **extra,
    )
    path = prefix + ".model"
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return path
