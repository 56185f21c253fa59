"""workloads.events.phase: phase_start / phase_end around a block, through any emit."""

from __future__ import annotations

import pytest

from workloads import events


def test_phase_through_a_given_emit_ends_on_error():
    sent = []
    with pytest.raises(RuntimeError), events.phase("epoch-1", emit=lambda kind, **f: sent.append((kind, f)), lr=0.1):
        raise RuntimeError("boom")
    assert sent == [("phase_start", {"phase": "epoch-1", "lr": 0.1}), ("phase_end", {"phase": "epoch-1"})]


def test_phase_defaults_to_the_module_emit(monkeypatch):
    sent = []
    monkeypatch.setattr(events, "emit", lambda kind, **f: sent.append((kind, f)))
    with events.phase("warmup", steps=2):
        pass
    assert sent == [("phase_start", {"phase": "warmup", "steps": 2}), ("phase_end", {"phase": "warmup"})]
