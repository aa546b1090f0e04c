"""The trainserve client: the Python API (``Client``) and the client commands.

Installs and imports without the server: only ``requests`` (pandas for DataFrames).
Imports point one way: ``cli`` → ``commands``/``sweep_commands`` → ``client``,
``formatting``, ``hyperparameters`` (the server's table of hyperparameters, shipped in
this package so that ``trainserve train`` has a flag for each).
"""

from trainserve_client.client import ApiError, Client, ClientError, ConnectionFailed, Event

__all__ = ["ApiError", "Client", "ClientError", "ConnectionFailed", "Event"]
