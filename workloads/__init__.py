"""Loads that run in their own process while the meters record.

``python -m workloads NAME --params JSON [-- COMMAND ...]`` runs one; the recorder builds that
argv with :func:`workloads.registry.prepare` (or ``command_for``) and reads the events
(:mod:`workloads.events`) from a pipe.  :mod:`workloads.registry` names the workloads and
their parameters, :mod:`workloads.cnn` trains torchvision models, :mod:`workloads.load_shapes`
makes sharp utilisation edges, :mod:`workloads.command` runs any command, and
:mod:`workloads.process_group` stops a process group (SIGTERM, then SIGKILL).  Importing this
package does not import torch.
"""
