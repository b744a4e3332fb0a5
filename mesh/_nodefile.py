"""Finding a running node (its node.json and lock) with `os` calls and string paths: what `meshctl`'s hot
verbs do before they ask the node anything. `mesh.paths` re-exports all of it (and adds the `Path` API).

Why not `pathlib`: importing it loads `re`, `fnmatch`, `enum`, `functools`, `urllib.parse`, `ipaddress`, …
~5 ms of a `meshctl status` whose floor, `python -c pass` in a venv installed from a wheel, is ~10 ms
(issue 15). Paths here are `str`s spelled as `str(Path(...))` spells them (`normpath`), so every message
and every value reads as it did when they were `Path`s.
"""

from __future__ import annotations

import os
import sys

from mesh import _json as json  # json's own C functions: meshctl's start-up
from mesh.core.errors import AmbiguousNode, NodeNotFound, shown
from mesh.core.values import value

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the import below
if TYPE_CHECKING:
    from os import PathLike

DEFAULT_MESH = "default"
_APP = "session-mesh"


@value  # not a dataclass: meshctl's start-up (see mesh.core.values)
class RunningNode:
    """What node.json says about a running node (paths as strings)."""

    name: str
    mesh: str
    node_id: str
    pid: int
    socket: str
    address: str
    state_dir: str
    hook_socket: str | None = None  # the hook wire (older nodes have none)
    watch_pid: int | None = None  # the session process it serves (--watch-pid): how an MCP server finds it


def normpath(path: str) -> str:
    """`str(PurePosixPath(path))`: repeated and trailing slashes and `.` parts dropped, `..` kept, a leading
    `//` kept (POSIX leaves it to the system), '' is '.'. TypeError for anything but a str, as Path's."""
    if not isinstance(path, str):
        raise TypeError(f"expected str, not {type(path).__name__}")
    root = ""
    if path[:1] == "/":
        root = "//" if path[:2] == "//" and path[:3] != "///" else "/"
    return root + "/".join(p for p in path.split("/") if p and p != ".") or "."


def home_arg(text: str) -> str:
    """`--home`'s converter: the path as `Path(text)` would spell it."""
    return normpath(text)


def default_home() -> str:
    """Root of all local state: $MESH_HOME (`~` expanded), else the platform's user data dir."""
    env = os.environ.get("MESH_HOME")
    if env:
        return normpath(os.path.expanduser(env))
    found = _linux_data_dir()
    if found is not None:
        return normpath(found)
    import platformdirs

    return normpath(platformdirs.user_data_dir(_APP, appauthor=False))


def _linux_data_dir() -> str | None:
    """platformdirs' user data dir in the plain Linux case, without importing it (~10 ms of every
    `meshctl` run): `$XDG_DATA_HOME/session-mesh` if that is absolute, else `~/.local/share/session-mesh`
    with an absolute $HOME. None for anything else (Android, a relative XDG_DATA_HOME or HOME, …): then
    platformdirs decides (tests/core/test_paths_home.py holds the two equal)."""
    if sys.platform != "linux" or hasattr(sys, "getandroidapilevel") or "ANDROID_DATA" in os.environ:
        return None
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg:
        return os.path.join(xdg, _APP) if os.path.isabs(xdg) else None
    if not os.path.isabs(os.environ.get("HOME", "")):
        return None
    return os.path.join(os.path.expanduser("~/.local/share"), _APP)


def node_dir(home: str, mesh: str, name: str) -> str:
    """State directory of the node called `name` in `mesh` (both valid names: one directory each)."""
    return os.path.join(home, "meshes", mesh, "nodes", name)


def is_locked(state_dir: str | PathLike[str]) -> bool:
    """Whether a live process holds the node's lock."""
    path = os.path.join(state_dir, "node.lock")
    if not os.path.exists(path):
        return False
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def running(state_dir: str) -> RunningNode | None:
    """The node whose state dir this is, if it runs: its node.json present and readable, its lock held."""
    if not is_locked(state_dir):
        return None
    try:
        with open(os.path.join(state_dir, "node.json"), "rb") as f:
            d = json.loads(f.read())
        return RunningNode(
            name=d["name"], mesh=d["mesh"], node_id=d["node_id"], pid=int(d["pid"]),
            socket=normpath(d["socket"]), address=d["address"], state_dir=state_dir,
            hook_socket=normpath(d["hook_socket"]) if d.get("hook_socket") else None,
            watch_pid=int(d["watch_pid"]) if d.get("watch_pid") else None,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):  # damaged: not running
        return None


def _dirs(path: str) -> list[str]:
    """The names of the directories in `path` (symlinks followed), sorted; none if it cannot be read."""
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return []
    found = []
    for e in entries:
        try:
            if e.is_dir():
                found.append(e.name)
        except OSError:
            continue
    return sorted(found)


def running_nodes(home: str | PathLike[str], mesh: str | None = None) -> list[RunningNode]:
    """Nodes running under `home` (optionally one mesh): node.json present and the lock held, by mesh then
    by state directory."""
    if mesh is not None:
        from mesh.core.validate import name as valid_name

        valid_name(mesh, "mesh name")
    root = os.path.join(normpath(os.fspath(home)), "meshes")
    found = []
    for m in [mesh] if mesh else _dirs(root):
        nodes = os.path.join(root, m, "nodes")
        for n in _dirs(nodes):
            sd = os.path.join(nodes, n)
            if os.path.exists(os.path.join(sd, "node.json")):
                node = running(sd)
                if node is not None:
                    found.append(node)
    return found


def find_node(home: str | PathLike[str], mesh: str | None, name: str | None) -> RunningNode:
    """The node a client should talk to: by name, else the only one running; ambiguity is an error."""
    from mesh.core.validate import is_name

    where_home = normpath(os.fspath(home))
    if mesh is not None and name and is_name(mesh) and is_name(name):
        # The usual case of a hot verb ($MESH_MESH and --node / $MESH_NODE): its directory, not every
        # node's (a node's directory is named after it). Anything else (not running, ...) is said below.
        direct = running(node_dir(where_home, mesh, name))
        if direct is not None and direct.name == name:
            return direct
    nodes = running_nodes(where_home, mesh)
    where = f"mesh {mesh!r}" if mesh else "any mesh"
    if name:
        hits = [n for n in nodes if n.name == name]
        if not hits:
            raise NodeNotFound(
                f"no node named {shown(name)} is running under {home} ({where}); start one: meshctl up"
            )
        if len(hits) > 1:
            meshes = ", ".join(sorted(n.mesh for n in hits))
            raise AmbiguousNode(f"node {shown(name)} runs in several meshes ({meshes}); pass --mesh")
        return hits[0]
    if not nodes:
        raise NodeNotFound(
            f"no node is running under {home} ({where}); start one with: meshctl up --name NAME"
        )
    if len(nodes) > 1:
        choices = ", ".join(f"{n.name} (mesh {n.mesh})" for n in nodes)
        raise AmbiguousNode(
            f"several nodes are running: {choices}; choose one with --node NAME or $MESH_NODE"
        )
    return nodes[0]
