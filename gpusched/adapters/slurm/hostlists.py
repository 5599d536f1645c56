"""Slurm hostlist expressions, for the adapter: they live in :mod:`gpusched.hostlist`
(the base layer), since the simulator and the service write them too."""

from ...hostlist import (MAX_HOSTS, NAME_SPECIALS, _ASCII_NUMBER, _MAX_DIGITS,
                         check_host_name, compress_hostlist, expand_hostlist, hostlist_size)

__all__ = ["MAX_HOSTS", "expand_hostlist", "hostlist_size", "compress_hostlist",
           "NAME_SPECIALS", "check_host_name", "_ASCII_NUMBER", "_MAX_DIGITS"]
