"""Chat prompts: the template stored with a model, or Gemma's turn format.

Hugging Face folders keep a Jinja chat template in ``tokenizer_config.json`` (``chat_template``,
a string or a list of named ones) or in ``chat_template.jinja``; GGUF files in the metadata key
``tokenizer.chat_template``.  Every Gemma-family instruction-tuned model's template writes the
turn format of :func:`gemma_native.tokenizer.format_chat`, so a template that uses the Gemma
turn markers (or no template) is rendered by that function, with no Jinja needed.  Any other
template (a fine-tune's own, e.g. ChatML) is rendered with Jinja2 in a sandbox, as
``transformers``' ``apply_chat_template`` does, and its text is tokenized without an added
``<bos>`` (such templates write their own).
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

from .errors import InvalidArgumentError, ModelFormatError, TokenizerError
from .tokenizer import END_OF_TURN, START_OF_TURN, format_chat


def is_gemma_template(template: str | None) -> bool:
    """True for no template or one that writes Gemma's turn markers."""
    return template is None or (START_OF_TURN in template and END_OF_TURN in template)


def template_from_hf_folder(folder: str) -> str | None:
    """The chat template of a Hugging Face folder, or None."""
    path = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    path = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelFormatError(f"{path}: not readable JSON ({e})") from None
    t = cfg.get("chat_template") if isinstance(cfg, dict) else None
    if isinstance(t, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {d.get("name"): d.get("template") for d in t if isinstance(d, dict)}
        t = named.get("default")
    if t is not None and not isinstance(t, str):
        raise ModelFormatError(f"{path}: chat_template must be a string")
    return t or None


def template_from_gguf(metadata: Mapping) -> str | None:
    t = metadata.get("tokenizer.chat_template")
    return t if isinstance(t, str) and t else None


def _raise(message):
    raise InvalidArgumentError(f"the model's chat template refused the messages: {message}")


def render(template: str, messages: Sequence[Mapping], add_generation_prompt: bool,
           bos_token: str, eos_token: str) -> str:
    """The text of a non-Gemma template for ``messages`` (Jinja2, sandboxed)."""
    try:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise TokenizerError(
            "this model's chat template is not Gemma's turn format, and rendering it needs "
            "Jinja2: pip install jinja2") from None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template).render(
            messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
            bos_token=bos_token, eos_token=eos_token)
    except TemplateError as e:
        raise ModelFormatError(f"the model's chat template does not render: {e}") from None


def chat_prompt(template: str | None, messages: Sequence[Mapping], tokenizer) -> list:
    """Token ids of the prompt that asks the model for the next reply to ``messages``."""
    if is_gemma_template(template):
        return tokenizer.encode(format_chat(messages, add_generation_prompt=True),
                                add_bos=True)
    if isinstance(messages, (str, bytes, Mapping)) or not messages:
        raise InvalidArgumentError("messages must be a non-empty list of {'role', 'content'}")
    for n, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) \
                or not isinstance(m.get("content"), str):
            raise InvalidArgumentError(f"message {n} must be a dict with 'role' and 'content' "
                                       "strings")
    bos = tokenizer.id_to_piece(tokenizer.bos_id) if tokenizer.bos_id >= 0 else ""
    eos = tokenizer.id_to_piece(tokenizer.eos_id) if tokenizer.eos_id >= 0 else ""
    text = render(template, messages, True, bos, eos)
    return tokenizer.encode(text, add_bos=False)
