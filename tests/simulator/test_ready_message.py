"""What `ogsync simulator serve` prints once it listens: where, the key, and the lines that
point `ogsync sync` at it, right for the address it was given."""

from __future__ import annotations

from ogsync.simulator.cli import ready_message


def exports(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines() if line.strip().startswith("export ")]


def test_on_this_machine_two_lines_suffice():
    message = ready_message("127.0.0.1", 8765, "sim-bulk-key")
    assert "ready at http://127.0.0.1:8765 (API key sim-bulk-key)" in message
    assert exports(message) == [
        "export OGSYNC_BASE_URL=http://127.0.0.1:8765",
        "export OGSYNC_API_KEY=sim-bulk-key",
    ]
    assert message.rstrip().endswith(" sync")


def test_every_interface_is_reached_on_loopback():
    assert (
        exports(ready_message("0.0.0.0", 9000, "k"))[0]
        == "export OGSYNC_BASE_URL=http://127.0.0.1:9000"
    )
    assert exports(ready_message("::1", 9000, "k"))[0] == "export OGSYNC_BASE_URL=http://[::1]:9000"


def test_another_host_needs_plain_http_allowed():
    lines = exports(ready_message("10.0.0.5", 8765, "k"))
    assert "export OGSYNC_ALLOW_INSECURE_HTTP=1" in lines


def test_a_clock_of_its_own_needs_a_tolerance():
    lines = exports(ready_message("127.0.0.1", 8765, "k", clock_moves=False))
    assert any(line.startswith("export OGSYNC_CLOCK_TOLERANCE_MINUTES=") for line in lines)
