"""``expect``: pytest.raises for gemma_native's errors, checking the class and the message."""

from __future__ import annotations

import pytest

import gemma_native as gn


def expect(exc_type, *fragments):
    """pytest.raises(exc_type) that also checks the exception is a GemmaNativeError and that its
    message contains every fragment."""

    class _Check:
        def __enter__(self):
            self._cm = pytest.raises(exc_type)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._cm.__exit__(*exc)
            if not handled:  # another exception type: let it propagate as the failure
                return False
            err = self.info.value
            assert isinstance(err, gn.GemmaNativeError), type(err).__mro__
            msg = str(err)
            for frag in fragments:
                assert str(frag) in msg, f"{frag!r} not in message {msg!r}"
            return handled

    return _Check()
