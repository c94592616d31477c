"""The room model: the sidecar registry, and the container group it and the spec make.

`registry` lists every sidecar (each one's record lives in its own folder); `group` renders the spec and
the registry into the room's containers, which every rendering and `ccr room up` share; `runner` starts one
sidecar from the room it is in (`ccr sidecar run NAME` in a container or a process of `ccr room up`).
"""
