"""`gemma-native chat` as a newcomer meets it: in a pseudo-terminal (pexpect), typing turns,
commands and Ctrl-C.  The model is a tiny random checkpoint with a tiny tokenizer; its folder
name carries no instruction-tuned marker, so the base-model warning must show."""

from __future__ import annotations

import os
import sys

import pytest

pexpect = pytest.importorskip("pexpect")

TIMEOUT = 60
PROMPT = "\r\n> "


def _spawn(folder, *extra):
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TERM="dumb")
    env.pop("PYTHONWARNINGS", None)
    child = pexpect.spawn(sys.executable, ["-m", "gemma_native.cli", "chat", folder, *extra],
                          env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 200))
    return child


@pytest.fixture(scope="module")
def tok_dir(tiny_checkpoint):
    return tiny_checkpoint(seed=3, tokenizer=True)


def test_banner_warning_turns_reset_and_quit(tok_dir):
    child = _spawn(tok_dir, "-n", "4", "--seed", "1")
    child.expect("gemma-native chat: model")  # the banner names the model ...
    child.expect("/reset")  # ... and the commands
    child.expect("/quit")
    child.expect("base \\(pretrained\\) model")
    child.expect("> ")
    child.sendline("hello there")
    child.expect(PROMPT)  # the reply, then a new prompt
    child.sendline("/reset")
    child.expect("new conversation")
    child.expect("> ")
    child.sendline("/system be brief")
    child.expect("system prompt set")
    child.expect("> ")
    child.sendline("/nonsense")
    child.expect("unknown command /nonsense")
    child.expect("> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_the_reply_and_returns_to_the_prompt(tok_dir):
    # A reply that would run for a very long time: no stop token, a huge token budget.
    child = _spawn(tok_dir, "-n", "100000000", "--ignore-eos", "-t", "1.0", "--seed", "2")
    child.expect("> ")
    child.sendline("write forever")
    child.expect("write forever\r\n")  # the terminal's echo of the line
    child.expect(r"\S")  # the reply has started
    child.sendintr()
    child.expect("\\(stopped\\)")
    child.expect("> ")
    # the session goes on: commands work, and Ctrl-C at the prompt does not quit
    child.sendintr()
    child.expect("Ctrl-D leaves")
    child.sendline("/reset")
    child.expect("new conversation")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_terminal_shows_weight_conversion_progress(tok_dir):
    child = _spawn(tok_dir, "--dtype", "bfloat16", "-n", "2")
    child.expect(r"converting weights to bfloat16 \[[#-]+\] \d+/\d+")
    child.expect("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
