"""Protocol-faithful meter simulators (``calibrate simulate KIND``, ``--meter sim:KIND``).

Each simulator speaks the real bytes of its meter over a real pseudo-terminal, socket
or HTTP server; its power follows a :mod:`drivers.sim.signals` signal (by default this
machine's real CPU load through a wall-power model) and it can inject the faults of
:mod:`drivers.sim.faults`.  ``start()`` returns the meter URI a driver opens.
"""
