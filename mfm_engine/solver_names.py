"""The solver names, without importing torch: command lines check them before any model loads.

tests/test_cli_preflight.py keeps this equal to `mfm_engine.solvers.SOLVERS`.
"""

SOLVER_NAMES: tuple[str, ...] = ("euler", "midpoint", "heun", "rk3", "rk4", "adams", "dopri5")
