"""The Spark ports of a cluster of rooms: fixed, so the room network's firewall can name each one.

Executors run Spark's RPC in client mode (they dial the driver and the driver answers on that connection), so
an executor room listens only on its worker's RPC port and its block manager. The master's and worker's web
UIs and the master's REST server are never opened on the room network (their ports are not listed here).
"""

from __future__ import annotations

#: in the driver room
MASTER_PORT = 7077
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
ADMISSION_PORT = 7080
#: in each executor room (BLOCK_MANAGER_PORT too: executors fetch shuffle blocks from each other)
WORKER_PORT = 7081
#: bound inside each room but closed on the room network (tests check they are unreachable)
MASTER_UI_PORT = 8080
WORKER_UI_PORT = 8081

DRIVER_ROOM_PORTS = (MASTER_PORT, DRIVER_PORT, BLOCK_MANAGER_PORT, ADMISSION_PORT)
EXECUTOR_ROOM_PORTS = (BLOCK_MANAGER_PORT, WORKER_PORT)
