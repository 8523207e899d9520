"""dialbridge: phone dial-in and dial-out for self-hosted Jitsi Meet."""

__version__ = "0.1.0"
