"""Merchants each with a simulator and a key of their own, in one settings file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ogsync.simulator.server import RunningSimulator, simulator_process
from ogsync.testing.cli import clean_env, run_ogsync


def ogsync(*args: str, env: dict[str, str], cwd: Path):
    return run_ogsync(*args, env=env, cwd=cwd, timeout=180)


@contextmanager
def merchant_simulators(
    tmp_path: Path, db: Path, merchants: dict[str, tuple[int, int]]
) -> Iterator[tuple[dict[str, RunningSimulator], dict[str, str]]]:
    """A simulator process per merchant (name -> (records, seed)), a settings file in
    `tmp_path` naming each with its own schema and key variable (`<NAME>_KEY`), and an
    environment holding those keys and no OGSYNC_API_KEY: the keys are the merchants' own."""
    with ExitStack() as stack:
        sims = {
            name: stack.enter_context(
                simulator_process(["--records", str(n), "--seed", str(seed)], api_key=f"{name}-k")
            )
            for name, (n, seed) in merchants.items()
        }
        (tmp_path / "ogsync.toml").write_text(
            f'destination = "duckdb:///{db}"\n'
            + "".join(
                f'[merchants.{name}]\napi_key_env = "{name.upper()}_KEY"\n'
                f'base_url = "{sim.url}"\nschema = "{name}"\n'
                for name, sim in sims.items()
            )
        )
        env = {k: v for k, v in clean_env().items() if k != "OGSYNC_API_KEY"}
        env.update({f"{name.upper()}_KEY": f"{name}-k" for name in sims})
        yield sims, env
