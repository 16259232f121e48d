"""Multi-process helpers (Jittor's MPI engine): which process this is, and sums over processes.

Outside ``mpirun`` every function answers as the only process does, so callers need no branch.
The batch size of a config is the total over all processes; each process takes its share.
"""

from .runtime import jt


def get_world_size():
    """Number of processes (1 outside MPI)."""
    return jt.world_size if jt.in_mpi else 1


def get_rank():
    """This process's index, 0 .. world size - 1 (0 outside MPI)."""
    return jt.rank if jt.in_mpi else 0


def is_main_process():
    """True on rank 0: the one process that logs, writes checkpoints and prints results."""
    return get_rank() == 0


def sum_over_processes(var):
    """``var`` summed over all processes (``var`` itself outside MPI); every process gets the sum."""
    return var.mpi_all_reduce("add") if jt.in_mpi else var


def mean_over_processes(var):
    """``var`` averaged over all processes, as a sum then a division: Jittor's gradient of
    ``mpi_all_reduce('mean')`` omits the 1/world-size factor."""
    return sum_over_processes(var) / get_world_size() if jt.in_mpi else var
