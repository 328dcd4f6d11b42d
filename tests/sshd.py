"""The loopback sshd of the tests: it lives in bot/sshd.py, as ``replbot demo --ssh`` uses it
too. Kept here so tests import it where they always did."""

from bot.sshd import (
    HOST,
    SSHD_PATH,
    LocalSshd,
    SshdError,
    SshEndpoint,
    default_login_user,
    descendants,
    free_port,
)

__all__ = [
    "HOST",
    "SSHD_PATH",
    "LocalSshd",
    "SshEndpoint",
    "SshdError",
    "default_login_user",
    "descendants",
    "free_port",
]
