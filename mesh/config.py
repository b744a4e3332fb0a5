"""Node configuration: one frozen dataclass, presets, cross-field validation.

`meshctl up` flags, `MESH_*` environment variables and these fields are one set of names
(`--dead-after` ↔ `MESH_DEAD_AFTER` ↔ `dead_after`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mesh.core import validate
from mesh.core.membership import Timing
from mesh.core.values import fields, value
from mesh.errors import ConfigError
from mesh.paths import DEFAULT_MESH, default_home

PROTO_VERSION = 1


@value
class NodeConfig:
    """Everything a node needs to start. Build with a preset (`local()`, `lan()`, `fast()`) and `replace`."""

    name: str
    """This session's name: unique among live nodes of the mesh; its state dir is keyed by it."""
    role: str = ""
    """What this session does (free label, e.g. `i-match`)."""
    mesh: str = DEFAULT_MESH
    """Mesh name; meshes with different names never see each other."""
    home: Path | None = None
    """Root of local state (None: $MESH_HOME or the platform default)."""
    bind: str = "127.0.0.1"
    """Address the peer API listens on (127.0.0.1 keeps the mesh on this machine)."""
    port: int = 0
    """Peer API port (0: any free port)."""
    advertise: str = ""
    """host:port peers should dial (default: bind address and the bound port)."""
    peers: tuple[str, ...] = ()
    """Static seeds (host:port) for where multicast does not reach."""
    mdns: bool = True
    """Announce and browse `_sessionmesh._tcp.local.` with zeroconf."""
    mdns_interfaces: tuple[str, ...] = ("127.0.0.1",)
    """Interfaces zeroconf binds to; 127.0.0.1 never multicasts on the real network."""
    heartbeat_interval: float = 1.0
    """Seconds between heartbeats on each peer link."""
    suspect_after: float = 3.0
    """Seconds of silence before a peer is suspect."""
    dead_after: float = 10.0
    """Seconds of silence before a peer is dead."""
    forget_after: float = 900.0
    """Seconds a dead or departed peer stays listed before it is dropped from status."""
    join_window: float = 0.3
    """How long start-up listens for peers (name conflicts, first view) before the node reports ready."""
    watch_pid: int | None = None
    """Leave gracefully when this process exits (the session the node serves)."""
    tls: bool = True
    """Mutually authenticated TLS on peer links (off only for measurements)."""
    local_links: bool = True
    """Peers of this host and user link over a unix stream instead of gRPC+TLS (faster, same trust: see
    mesh._transport.local); off: every link is gRPC (`--no-local-links`, MESH_LOCAL_LINKS=0). Needs TLS on."""
    lease: float = 10.0
    """Claims: the short lease under every claim (D_P), renewed every third of it while the holder lives."""
    rho: float = 0.01
    """Claims: the largest clock-rate error assumed between any two nodes (1 %)."""
    one_round_claims: bool = True
    """Claims: a fresh claim first tries one round (MESH_ONE_ROUND_CLAIMS=0 turns it off; see
    LeaseConfig.single_round)."""
    thrifty_claims: bool = True
    """Claims: a one-round claim asks a bare majority of the stewards first, the rest only if needed
    (MESH_THRIFTY_CLAIMS=0 asks all at once; see LeaseConfig.thrifty)."""
    stewards: int = 5
    """Claims: the most stewards the set grows to (3 up to 6 live nodes, 5 from 7; odd; MESH_STEWARDS)."""
    bootstrap: bool = False
    """Create the first steward config without the per-home genesis lock (name exactly one such node)."""

    # ------------------------------------------------------------------ presets

    @classmethod
    def local(cls, name: str, **kw: Any) -> NodeConfig:
        """One machine: loopback peer API, mDNS on 127.0.0.1, default timeouts."""
        return cls(name=name, **kw).validate()

    @classmethod
    def lan(
        cls, name: str, *, bind: str = "0.0.0.0", interfaces: tuple[str, ...] = (), **kw: Any
    ) -> NodeConfig:
        """Several machines: listen on `bind`, mDNS on the named interfaces (never all by default)."""
        if not interfaces:
            raise ConfigError("lan(): name the interfaces (IP addresses) mDNS may use")
        return cls(name=name, bind=bind, mdns_interfaces=interfaces, **kw).validate()

    @classmethod
    def fast(cls, name: str, **kw: Any) -> NodeConfig:
        """Quick failure detection (heartbeat 0.2 s, suspect 0.6 s, dead 1.5 s): small meshes on one host."""
        base: dict[str, Any] = dict(heartbeat_interval=0.2, suspect_after=0.6, dead_after=1.5)
        base.update(kw)
        return cls(name=name, **base).validate()

    # ------------------------------------------------------------------ derived

    @property
    def timing(self) -> Timing:
        """The failure detector's timing."""
        return Timing(
            heartbeat_interval=self.heartbeat_interval,
            suspect_after=self.suspect_after,
            dead_after=self.dead_after,
            forget_after=self.forget_after,
            tick_interval=min(0.5, self.heartbeat_interval / 2),  # transitions themselves are timed exactly
        )

    @property
    def lease_config(self) -> Any:
        """The claims core's timing (derived per DESIGN.md from `lease` and `rho`)."""
        from mesh.core.claims import LeaseConfig

        return LeaseConfig(
            lease=self.lease,
            rho=self.rho,
            max_stewards=self.stewards,
            single_round=self.one_round_claims,
            thrifty=self.thrifty_claims,
        )

    @property
    def home_dir(self) -> Path:
        """The resolved home directory."""
        return self.home if self.home is not None else default_home()

    def validate(self) -> NodeConfig:
        """Check every field and the relations between them; returns self or raises ConfigError."""
        validate.name(self.name)
        validate.name(self.mesh, "mesh name")
        if self.role:
            validate.name(self.role, "role")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        for p in self.peers:
            validate.address(p, "peer")
        if self.advertise:
            validate.address(self.advertise, "advertise address")
        if not 0.01 <= self.heartbeat_interval <= 60:
            raise ConfigError("heartbeat_interval must be between 0.01 and 60 seconds")
        if self.suspect_after < 2 * self.heartbeat_interval:
            raise ConfigError(
                "suspect_after must be at least twice heartbeat_interval (one lost beat is not a death)"
            )
        if self.dead_after <= self.suspect_after:
            raise ConfigError("dead_after must be longer than suspect_after")
        if self.forget_after < self.dead_after:
            raise ConfigError("forget_after must be at least dead_after")
        if not 0 <= self.join_window <= 30:
            raise ConfigError("join_window must be 0-30 seconds")
        if not 1 <= self.stewards <= 15:
            raise ConfigError(f"stewards must be 1 to 15, not {self.stewards}")
        if self.watch_pid is not None and self.watch_pid <= 0:
            raise ConfigError(f"watch_pid must be a process id, not {self.watch_pid}")
        if not 0.5 <= self.lease <= 600:
            raise ConfigError("lease must be between 0.5 and 600 seconds")
        if not 0 <= self.rho < 0.2:
            raise ConfigError("rho must be between 0 and 0.2")
        if self.mdns and not self.mdns_interfaces:
            raise ConfigError("mDNS needs at least one interface address")
        _ip_literal(self.bind, "bind address", allow_any=True)
        for ip in self.mdns_interfaces:
            _ip_literal(ip, "mDNS interface address")
        return self

    @classmethod
    def env_options(cls, environ: dict[str, str] | None = None) -> dict[str, Any]:
        """Options given as MESH_<FIELD> variables (e.g. MESH_DEAD_AFTER=20), parsed to field types."""
        env = os.environ if environ is None else environ
        out: dict[str, Any] = {}
        defaults = cls(name="x")
        for name in fields(cls):
            key = "MESH_" + name.upper()
            if key in env and name not in ("name",):
                out[name] = _parse_env(name, env[key], getattr(defaults, name))
        return out


def _parse_env(name: str, raw: str, current: Any) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if name == "home":
            return Path(raw).expanduser()
        if isinstance(current, int) or name == "watch_pid":
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            return tuple(x for x in raw.split(",") if x)
        return raw
    except ValueError:
        raise ConfigError(f"MESH_{name.upper()}={validate.shown(raw)} is not a valid {name}") from None


def _ip_literal(value: str, field: str, allow_any: bool = False) -> None:
    """An IPv4/IPv6 address of this host's kind (checked here: deeper down it surfaces as a traceback)."""
    import ipaddress

    if allow_any and value == "localhost":
        return
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{field} {value[:64]!r} is not an IP address (like 127.0.0.1 or ::1)") from None
    if ip.is_unspecified and not allow_any:
        raise ConfigError(f"{field} must be a specific address, not {value}")
