"""Run a command under the system-call sandbox a systemd unit of deploy/systemd/ asks for, then exec it.

systemd cannot run here (the tests do not own PID 1), but what would break Python under a unit's
hardening is mostly the kernel's seccomp filter: a system call it refuses fails with EPERM
(``SystemCallErrorNumber=EPERM``). This reproduces that filter from the unit file itself:

- ``NoNewPrivileges=yes``: ``prctl(PR_SET_NO_NEW_PRIVS)``;
- ``SystemCallFilter=``: the allow list (``@system-service``) minus the deny lists
  (``~@privileged @resources``), expanded with ``systemd-analyze syscall-filter`` of this machine's
  systemd, loaded with libseccomp as systemd does: anything else fails with the unit's errno;
- ``MemoryDenyWriteExecute=yes``: systemd's own rules (mmap with PROT_WRITE|PROT_EXEC, mprotect or
  pkey_mprotect adding PROT_EXEC, shmat with SHM_EXEC fail with EPERM);
- socket activation (``--listen-fd N``): fd N becomes fd 3 with LISTEN_FDS=1 and LISTEN_PID set to
  the process that runs the command, as systemd passes a .socket unit's socket.

Usage: python sandbox.py UNIT_FILE [--listen-fd N] -- COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

PR_SET_NO_NEW_PRIVS = 38
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000


def scmp_act_errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """The [Service] assignments of a unit file, each key with all its values in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@cache
def _group(name: str) -> frozenset[str]:
    """A systemd system-call group, nested groups expanded, as this machine's systemd defines it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise RuntimeError("systemd-analyze is needed to expand system-call groups")
    out = subprocess.run([analyze, "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        names |= _group(item) if item.startswith("@") else {item}
    return frozenset(names)


def _expand(items: list[str]) -> set[str]:
    names: set[str] = set()
    for item in items:
        names |= _group(item) if item.startswith("@") else {item}
    return names


def allowed_syscalls(filters: list[str]) -> set[str]:
    """systemd's reading of SystemCallFilter= lines: the first sets an allow list, ``~`` lines take names out."""
    allowed: set[str] | None = None
    for value in filters:
        deny = value.startswith("~")
        items = value.lstrip("~").split()
        if deny:
            if allowed is None:
                raise ValueError("a deny list before any allow list is not what deploy/systemd uses")
            allowed -= _expand(items)
        elif allowed is None:
            allowed = _expand(items)
        else:
            allowed |= _expand(items)
    return allowed or set()


def _libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ScmpArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _rule(lib: ctypes.CDLL, ctx: int, action: int, syscall: str, *conditions: tuple[int, int, int]) -> None:
    number = lib.seccomp_syscall_resolve_name(syscall.encode())
    if number == -1:  # __NR_SCMP_ERROR: no such call on this architecture
        return
    array = (ScmpArgCmp * max(1, len(conditions)))(
        *[ScmpArgCmp(arg, SCMP_CMP_MASKED_EQ, mask, value) for arg, mask, value in conditions]
    )
    result = lib.seccomp_rule_add_array(ctypes.c_void_p(ctx), action, number, len(conditions), array)
    if result < 0 and number >= 0:
        raise OSError(-result, f"seccomp_rule_add({syscall})")


def install(unit: Path) -> None:
    settings = unit_settings(unit)
    if settings.get("NoNewPrivileges", ["no"])[-1] == "yes":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    lib = _libseccomp()
    # Memory first: once the allow list is loaded, loading another filter may itself be refused
    # (systemd loads them all before it executes the command).
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        # systemd's seccomp_memory_deny_write_execute(), which always answers EPERM.
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        eperm = scmp_act_errno(errno.EPERM)
        wx = PROT_WRITE | PROT_EXEC
        _rule(lib, ctx, eperm, "mmap", (2, wx, wx))
        _rule(lib, ctx, eperm, "mmap2", (2, wx, wx))
        _rule(lib, ctx, eperm, "mprotect", (2, PROT_EXEC, PROT_EXEC))
        _rule(lib, ctx, eperm, "pkey_mprotect", (2, PROT_EXEC, PROT_EXEC))
        _rule(lib, ctx, eperm, "shmat", (2, SHM_EXEC, SHM_EXEC))
        if lib.seccomp_load(ctypes.c_void_p(ctx)) != 0:
            raise OSError(ctypes.get_errno(), "seccomp_load (MemoryDenyWriteExecute)")
        lib.seccomp_release(ctypes.c_void_p(ctx))

    error_name = settings.get("SystemCallErrorNumber", ["EPERM"])[-1]
    refuse = scmp_act_errno(getattr(errno, error_name))
    if "SystemCallFilter" in settings:
        ctx = lib.seccomp_init(refuse)
        for name in sorted(allowed_syscalls(settings["SystemCallFilter"])):
            _rule(lib, ctx, SCMP_ACT_ALLOW, name)
        if lib.seccomp_load(ctypes.c_void_p(ctx)) != 0:
            raise OSError(ctypes.get_errno(), "seccomp_load (system-call filter)")
        lib.seccomp_release(ctypes.c_void_p(ctx))


def main(argv: list[str]) -> None:
    if "--" not in argv or len(argv) < 3:
        raise SystemExit(__doc__)
    split = argv.index("--")
    options, command = argv[1:split], argv[split + 1 :]
    unit = Path(options[0])
    if options[1:2] == ["--listen-fd"]:
        fd = int(options[2])
        if fd != 3:
            os.dup2(fd, 3, inheritable=True)
            os.close(fd)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid
    install(unit)
    os.execvp(command[0], command)  # noqa: S606 (the command runs as given, like systemd's ExecStart)


if __name__ == "__main__":
    main(sys.argv)
