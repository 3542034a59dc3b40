"""Key sources: the script format, scripted timing, and a real pty put in cbreak mode and restored."""

import os
import pty
import signal
import termios

import pytest

from operating_platform.dataflow.keyboard import KeyScriptError, ScriptedKey, ScriptedKeys, TerminalKeys, parse_key_script


def test_parse_key_script():
    assert parse_key_script("n@4, r@2.5,e") == [ScriptedKey(4.0, "n"), ScriptedKey(2.5, "r"), ScriptedKey(0.0, "e")]
    assert parse_key_script("") == []
    with pytest.raises(KeyScriptError, match="item 2 'x@1': unknown key 'x'"):
        parse_key_script("n@1,x@1")
    with pytest.raises(KeyScriptError, match="delay 'soon' is not a number"):
        parse_key_script("n@soon")
    with pytest.raises(KeyScriptError, match=">= 0"):
        parse_key_script("n@-1")


def test_scripted_keys_start_with_recording_and_follow_the_delays():
    keys = ScriptedKeys(parse_key_script("n@2,p@1,r@1,e@0"))
    assert keys.poll(100.0) == [], "nothing before start()"
    keys.start(10.0, take=0)
    keys.start(11.0, take=0)  # a second start does not move the clock
    assert keys.poll(11.9) == []
    assert keys.poll(12.0) == ["n"]
    keys.start(12.1, take=0)  # the take n ended still shows as recording (status lags): not a new take
    assert keys.poll(20.0) == [], "p waits for the next take, however long saving and the reset pause take"
    keys.start(20.0, take=1)
    assert keys.poll(20.9) == [] and keys.poll(21.0) == ["p"]
    assert keys.poll(22.0) == ["r"], "p does not end the take: r follows 1 s after it"
    keys.start(22.5, take=(1, 1))
    assert keys.poll(22.5) == ["e"] and keys.exhausted


@pytest.fixture
def terminal():
    """(keyboard side fd, terminal stream) of a real pseudo-terminal."""
    leader, follower = pty.openpty()
    with open(follower, "r", closefd=False) as stream:
        yield leader, stream
    os.close(leader)
    os.close(follower)


def test_terminal_keys_read_a_real_pty_and_restore_it_on_error(terminal):
    leader, stream = terminal
    before = termios.tcgetattr(stream.fileno())
    with pytest.raises(RuntimeError):
        with TerminalKeys(stream) as keys:
            during = termios.tcgetattr(stream.fileno())
            assert not during[3] & termios.ICANON and not during[3] & termios.ECHO
            os.write(leader, b"nXr")
            assert keys.poll() == ["n", "r"], "unknown keys are ignored"
            assert keys.poll() == []
            raise RuntimeError("crash in the console loop")
    assert termios.tcgetattr(stream.fileno()) == before


def test_terminal_is_restored_when_the_process_is_terminated(terminal):
    _, stream = terminal
    before, handler = termios.tcgetattr(stream.fileno()), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with TerminalKeys(stream):
            os.kill(os.getpid(), signal.SIGTERM)
    assert termios.tcgetattr(stream.fileno()) == before
    assert signal.getsignal(signal.SIGTERM) == handler
