"""
The sans-IO RTMP core: bytes in, events and bytes out.

Nothing in this package imports twisted, klein, OpenSSL, socket, time or
logging (``tests/test_layering.py`` enforces this).  Time and randomness are
passed in by the caller; the Twisted adapters live in ``flashstream.protocol``.
"""
