"""The one line transport of the serial drivers: deadline, bounded buffer, port errors."""

from __future__ import annotations

import termios
import time

import pytest
import serial

from drivers.base import MeterDisconnected, MeterReadError
from drivers.transport import LineTransport


class FakePort:
    """A pyserial-like port that hands out scripted chunks, or raises ``fail``."""

    def __init__(self, chunks: list[bytes] = (), fail: BaseException | None = None) -> None:
        self.chunks, self.fail, self.written, self.closed = list(chunks), fail, b"", False

    @property
    def in_waiting(self) -> int:
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n: int) -> bytes:
        if self.fail is not None:
            raise self.fail
        if not self.chunks:
            time.sleep(0.005)  # the port's read timeout
            return b""
        return self.chunks.pop(0)

    def write(self, data: bytes) -> int:
        if self.fail is not None:
            raise self.fail
        self.written += data
        return len(data)

    def reset_input_buffer(self) -> None:
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True


def test_lines_come_back_with_terminator_and_arrival_time():
    line = LineTransport(FakePort([b"12,3", b"4\nnext\n"]), "port")
    before = time.monotonic_ns()
    raw, t_ns = line.read_until(b"\n", 1.0)
    assert raw == b"12,34\n" and before <= t_ns <= time.monotonic_ns()
    assert line.read_until(b"\n", 1.0)[0] == b"next\n"  # already buffered


@pytest.mark.parametrize("exc", [termios.error(5, "Input/output error"), OSError(5, "EIO"),
                                 serial.SerialException("socket disconnected"),
                                 ConnectionResetError(104, "reset"), EOFError()])
def test_every_port_error_is_a_disconnect(exc):
    for call in (lambda t: t.read_until(b"\n", 0.5), lambda t: t.write(b"x"),
                 lambda t: t.flush_input()):
        with pytest.raises(MeterDisconnected):
            call(LineTransport(FakePort(fail=exc), "port"))


def test_closed_transport_is_a_disconnect_and_close_is_idempotent():
    port = FakePort()
    line = LineTransport(port, "port")
    line.close()
    line.close()
    assert port.closed
    with pytest.raises(MeterDisconnected):
        line.write(b"x")


def test_a_line_longer_than_the_cap_is_garbage_and_the_buffer_stays_bounded():
    line = LineTransport(FakePort([b"x" * 60] * 10 + [b"ok\n"]), "port", max_line=100)
    with pytest.raises(MeterReadError) as exc:
        line.read_until(b"\n", 1.0)
    assert exc.value.code == "garbage" and len(line._buf) == 0
    line = LineTransport(FakePort([b"y" * 150 + b"\n"]), "port", max_line=100)
    with pytest.raises(MeterReadError) as exc:
        line.read_until(b"\n", 1.0)
    assert exc.value.code == "garbage"


def test_deadline_partial_and_stop():
    line = LineTransport(FakePort([b"half"]), "port")
    with pytest.raises(MeterReadError) as exc:
        line.read_until(b"\n", 0.05)
    assert exc.value.code == "garbage" and line.discard() == b""
    line = LineTransport(FakePort([b"#d,1"]), "port")
    with pytest.raises(MeterReadError) as exc:
        line.read_until(b";", 0.05, keep_partial=True)
    assert exc.value.code == "timeout" and line.discard() == b"#d,1"
    line = LineTransport(FakePort(), "port")
    t0 = time.monotonic()
    with pytest.raises(MeterReadError) as exc:
        line.read_until(b"\n", 5.0, stop=lambda: True)
    assert exc.value.code == "timeout" and time.monotonic() - t0 < 1.0


def test_terminator_split_across_reads():
    line = LineTransport(FakePort([b"abc\r", b"\ndef\r\n"]), "port")
    assert line.read_until(b"\r\n", 1.0)[0] == b"abc\r\n"
    assert line.read_until(b"\r\n", 1.0)[0] == b"def\r\n"
