"""A signal turned into another exception by native code is still recognised as an interrupt."""

from __future__ import annotations

import os
import signal

import pytest

from training.interrupts import InterruptWatch


def test_interrupt_disguised_as_runtime_error_is_reraised():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGINT"), InterruptWatch() as watch:
            try:
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    signal.sigtimedwait([], 0.1)  # give the handler a chance to run
                except KeyboardInterrupt as interrupt:  # what pybind11 does inside TensorFlow
                    raise RuntimeError("MISMATCH of original and normalized active exception types") from interrupt
            except Exception as error:
                watch.reraise_if_interrupted(error)
                pytest.fail("the interrupt was taken for an ordinary error")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ordinary_errors_pass_and_ignored_signals_stay_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with InterruptWatch() as watch:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            watch.reraise_if_interrupted(ValueError("bad input"))  # no signal seen: returns
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_reraises_what_its_own_handler_raises():
    class Stop(BaseException):
        pass

    def handler(signum, frame):
        raise Stop()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(Stop), InterruptWatch() as watch:
            try:
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    signal.sigtimedwait([], 0.1)
                except Stop as stop:
                    raise RuntimeError("converted by native code") from stop
            except Exception as error:
                watch.reraise_if_interrupted(error)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupt_whose_exception_was_swallowed_is_raised_before_committing():
    """A finalizer or native callback that eats KeyboardInterrupt must not let the work publish."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with InterruptWatch() as watch:
            watch.raise_if_received()  # nothing received: returns
            try:
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 0.1)
            except KeyboardInterrupt:
                pass  # swallowed, as inside some native callback
            with pytest.raises(KeyboardInterrupt, match="signal SIGINT"):
                watch.raise_if_received()
    finally:
        signal.signal(signal.SIGINT, previous)
