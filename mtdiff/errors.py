"""The project's error types that every layer raises or recognises (imported by `config`,
`methods`, `cli` and `data.io`, so it imports nothing of the project itself)."""

import errno

# An out-of-space error: the disk is full, or the user's quota is.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""
