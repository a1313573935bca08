"""CUDA kernels: numba.cuda mirrors of fastbp._kernels.cpu, same names, same plan, same flat buffers.

Importing this package imports numba.cuda; fastbp.cuda (the backend) imports it only once a GPU, or
the simulator (NUMBA_ENABLE_CUDASIM=1), has been found.

Every pass is a *grid-stride phase*: a device function any block shape and grid size can run, so one
body serves both a standalone kernel (tests, one pass) and the compiled training step, a cooperative
kernel that runs a whole chunk of steps in one launch and separates the phases with grid.sync()
(what the CPU's train_steps is for the CPU: no per-step dispatch from Python).
"""
