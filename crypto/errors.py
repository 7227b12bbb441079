"""One exception base for everything cryptographic, as PyNaCl's own ``nacl.exceptions``."""


class CryptoError(Exception):
    """Base class of every failure raised by :mod:`crypto`."""


class InvalidKey(CryptoError):
    """A key has the wrong length or type."""


class RecordOpenError(CryptoError):
    """A ciphertext could not be opened: wrong key, wrong place, tampered or unknown format."""


class KeyFileError(CryptoError):
    """A key file is missing, unreadable or not in a format this version understands."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not unlock the key file."""


class BadSignature(CryptoError):
    """A signed statement was not signed by this key, or was changed after signing."""
