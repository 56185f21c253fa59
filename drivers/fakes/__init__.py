"""Fakes of the software meters' system interfaces, shipped as product code so that
``calibrate demo`` and the tests run on machines without RAPL or NVIDIA GPUs:
:mod:`drivers.fakes.powercap` (a powercap sysfs tree whose counters advance and wrap)
and :mod:`drivers.fakes.nvml` (a ``pynvml``-compatible module with simulated GPUs).
"""
