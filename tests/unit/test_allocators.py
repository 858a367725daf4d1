"""The CLI's process allocates with the system allocator, in few glibc arenas."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ogsync import allocators


def _in_a_fresh_process(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas are Linux's")
def test_the_arena_cap_is_set_on_glibc():
    # A fresh process: the cap is process-wide, and this one's test runner owns its own.
    assert (
        _in_a_fresh_process(
            "from ogsync.allocators import limit_malloc_arenas; print(limit_malloc_arenas())"
        )
        == "True"
    )


def test_an_arena_count_the_environment_gives_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert allocators.limit_malloc_arenas() is False


def test_lean_allocators_put_arrow_on_the_system_allocator():
    code = (
        "import pyarrow; from ogsync.allocators import use_lean_allocators; "
        "use_lean_allocators(); print(pyarrow.default_memory_pool().backend_name)"
    )
    assert _in_a_fresh_process(code) == "system"
