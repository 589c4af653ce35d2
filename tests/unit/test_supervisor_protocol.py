"""The supervisor's wire protocol: field checks, event lines, exit codes (docs/PROTOCOL.md §3.6)."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest

from enqueue.clock import SystemClock
from enqueue.supervisor_protocol import (
    EventPipe, expect_float, expect_int, expect_str_dict, expect_str_list, shell_exit_code, signal_name,
)


def test_integers_are_integers_and_not_booleans() -> None:
    assert expect_int(7) == 7
    for bad in (True, 7.0, "7", None):
        with pytest.raises(TypeError):
            expect_int(bad)


def test_deadlines_are_finite_numbers() -> None:
    assert expect_float(3) == 3.0 and isinstance(expect_float(3), float)
    for bad in (False, "1.0", None):
        with pytest.raises(TypeError):
            expect_float(bad)
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            expect_float(bad)


def test_argv_and_env_have_string_items() -> None:
    assert expect_str_list(["a", "b"]) == ["a", "b"]
    assert expect_str_dict({"K": "V"}) == {"K": "V"}
    for bad in ("sleep 1", ["a", 1], ("a",)):
        with pytest.raises(TypeError):
            expect_str_list(bad)
    for bad in ({"K": 1}, {1: "V"}, [("K", "V")]):
        with pytest.raises(TypeError):
            expect_str_dict(bad)


def test_exit_codes_follow_the_shell() -> None:
    assert shell_exit_code(3 << 8) == (3, None)
    assert shell_exit_code(signal.SIGTERM) == (128 + signal.SIGTERM, "SIGTERM")
    assert signal_name(signal.SIGKILL) == "SIGKILL"
    assert signal_name(1000) == "signal 1000"


def test_events_are_one_json_line_each() -> None:
    read_fd, write_fd = os.pipe()
    try:
        pipe = EventPipe(write_fd, SystemClock().monotonic)
        pipe.emit({"kind": "started", "turn": 7, "pid": 4243})
        pipe.emit({"kind": "ready", "pid": 1})
        assert not pipe.pending
        lines = os.read(read_fd, 4096).split(b"\n")
        assert [json.loads(line) for line in lines[:2]] == [
            {"kind": "started", "turn": 7, "pid": 4243}, {"kind": "ready", "pid": 1}]
        assert lines[2:] == [b""]
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_full_pipe_keeps_events_pending_instead_of_blocking() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        pipe = EventPipe(write_fd, SystemClock().monotonic)
        for number in range(20000):  # far more than a pipe holds
            pipe.emit({"kind": "started", "turn": number, "pid": 1})
        assert pipe.pending
        while pipe.pending:
            os.read(read_fd, 1 << 16)
            pipe.flush()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_broken_pipe_drops_events() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        pipe = EventPipe(write_fd, SystemClock().monotonic)
        pipe.emit({"kind": "ready", "pid": 1})
        assert not pipe.pending
        pipe.emit({"kind": "ready", "pid": 2})
        assert not pipe.pending
    finally:
        os.close(write_fd)
