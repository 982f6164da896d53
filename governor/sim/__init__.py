"""Simulated boards: documented physics behind fake trees. Everything it produces is labelled simulated.

Entry points: :func:`open_sim_board` (``sim:<board>`` for every catalogue board), the board's
:meth:`~SimBoard.open_drivers` (the real drivers on its tree), :class:`SimExecutor` (simulated
inference latency), :class:`Scenario` (background load) and the two clocks. The model is described
in ``docs/simulator.md``.
"""

from governor.core.physics import LayerWork, Workload
from governor.sim.board import SIM_PREFIX, SimBoard, SimDriverBoard, open_sim_board, sim_board_name
from governor.sim.clock import RealClock, VirtualClock
from governor.sim.executor import SimExecutor, SimRun
from governor.sim.scenario import CoRunner, Phase, Scenario
from governor.sim.values import Truth
from governor.sim.workloads import grouped_alexnet, workload_from_meta

__all__ = [
    "SIM_PREFIX",
    "CoRunner",
    "LayerWork",
    "Phase",
    "RealClock",
    "Scenario",
    "SimBoard",
    "SimDriverBoard",
    "SimExecutor",
    "SimRun",
    "Truth",
    "VirtualClock",
    "Workload",
    "grouped_alexnet",
    "open_sim_board",
    "sim_board_name",
    "workload_from_meta",
]
