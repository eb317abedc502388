import os

# OpenMP workers that spin while they wait stall training when other processes hold the cores
# (bench/results/threads.md): let them sleep. libgomp reads this once, when torch is imported,
# so it is set here, before any trainer module imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
