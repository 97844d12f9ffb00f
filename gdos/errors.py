"""Stable error codes and the exit codes scripts can rely on.

An error an operator can see always carries one of these codes and a sentence
that says what to do next. The codes travel in error frames too, so the CLI
prints the daemon's or agent's refusal unchanged.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    # transport and protocol
    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_VERSION = "bad_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_MESSAGE = "bad_message"
    FLOW_VIOLATION = "flow_violation"
    LIMIT_EXCEEDED = "limit_exceeded"
    # daemon and local setup
    DAEMON_UNAVAILABLE = "daemon_unavailable"
    DAEMON_RUNNING = "daemon_running"
    UNSAFE_PATH = "unsafe_path"
    ADDRESS_IN_USE = "address_in_use"
    INTERNAL = "internal"
    # nodes, keys, tokens
    NODE_UNKNOWN = "node_unknown"
    NODE_OFFLINE = "node_offline"
    NODE_DISABLED = "node_disabled"
    NODE_MAINTENANCE = "node_maintenance"
    NO_TARGET = "no_target"
    KEY_UNKNOWN = "key_unknown"
    KEY_NOT_ACCEPTED = "key_not_accepted"
    KEY_AMBIGUOUS = "key_ambiguous"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    # tasks
    TASK_UNKNOWN = "task_unknown"
    TASK_FINISHED = "task_finished"
    INVALID_ARGUMENT = "invalid_argument"
    USAGE = "usage"
    USER_UNKNOWN = "user_unknown"
    NOT_PERMITTED = "not_permitted"
    SPAWN_FAILED = "spawn_failed"
    # remote shell sessions
    SESSION_UNKNOWN = "session_unknown"
    SESSION_LOST = "session_lost"
    IDLE_TIMEOUT = "idle_timeout"
    # packages
    MANIFEST_INVALID = "manifest_invalid"
    ARCHIVE_INVALID = "archive_invalid"
    ARCHIVE_UNSAFE = "archive_unsafe"
    PACKAGE_UNKNOWN = "package_unknown"
    PACKAGE_IN_USE = "package_in_use"
    PACKAGE_CORRUPT = "package_corrupt"
    STORAGE_FAILED = "storage_failed"
    PLATFORM_MISMATCH = "platform_mismatch"
    # systems, modules, instances
    SYSTEM_UNKNOWN = "system_unknown"
    MODULE_UNKNOWN = "module_unknown"
    INSTANCE_UNKNOWN = "instance_unknown"
    ALREADY_EXISTS = "already_exists"
    DEPENDENCY_CYCLE = "dependency_cycle"
    START_FAILED = "start_failed"
    STOP_FAILED = "stop_failed"
    PROCESS_NOT_FOUND = "process_not_found"
    PROCESS_AMBIGUOUS = "process_ambiguous"
    OPERATION_FAILED = "operation_failed"
    # logs
    PATH_NOT_ALLOWED = "path_not_allowed"
    LOG_NOT_FOUND = "log_not_found"
    # observe: alerts and backups
    RULE_UNKNOWN = "rule_unknown"
    BACKUP_INVALID = "backup_invalid"


class ExitCode(IntEnum):
    """Process exit codes of the ``gdos`` command (documented in docs/exec.md)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DAEMON_UNAVAILABLE = 3
    NOT_FOUND = 4
    EXEC_FAILED = 5
    EXEC_UNREACHABLE = 6
    EXEC_TIMED_OUT = 7
    CANCELED = 130
    SESSION_LOST = 255  # `shell`: the session ended without an exit status (like ssh)


_EXIT_FOR_CODE = {
    ErrorCode.DAEMON_UNAVAILABLE: ExitCode.DAEMON_UNAVAILABLE,
    ErrorCode.NODE_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.KEY_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.TASK_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.SESSION_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.NO_TARGET: ExitCode.NOT_FOUND,
    ErrorCode.PACKAGE_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.SYSTEM_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.MODULE_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.INSTANCE_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.LOG_NOT_FOUND: ExitCode.NOT_FOUND,
    ErrorCode.RULE_UNKNOWN: ExitCode.NOT_FOUND,
    ErrorCode.INVALID_ARGUMENT: ExitCode.USAGE,
    ErrorCode.KEY_AMBIGUOUS: ExitCode.USAGE,
    ErrorCode.USAGE: ExitCode.USAGE,
}


class GdosError(Exception):
    """An error with a stable code and an operator-facing sentence."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else code
        self.message = message

    @property
    def exit_code(self) -> int:
        return int(_EXIT_FOR_CODE.get(self.code, ExitCode.ERROR))  # type: ignore[call-overload]

    def to_body(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}

    def __str__(self) -> str:
        return f"error[{self.code}]: {self.message}"
