"""Publishing at the protocol level: bytes no well-behaved client would send.

nats-py refuses to publish what the server accepts (a subject that is not
UTF-8, say); a hostile publisher does not use nats-py. This opens a plain TCP
socket, says CONNECT, sends the PUB line as given and waits for the PONG, so
the server has the message once it returns.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def raw_publish(url: str, subject: bytes, payload: bytes, headers: bytes = b"") -> None:
    """PUB (or HPUB with `headers`, the `NATS/1.0` block without its final CRLF)."""
    await raw_send(url, pub_line(subject, payload, headers))


async def raw_send(url: str, protocol: bytes) -> bytes:
    """Send protocol bytes after CONNECT; what the server answered up to its PONG."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        await reader.readline()  # INFO
        connect = b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
        writer.write(connect + protocol + b"PING\r\n")
        await writer.drain()
        answer = b""
        async with asyncio.timeout(10):
            while b"PONG" not in answer and b"-ERR" not in answer:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                answer += chunk
        return answer
    finally:
        writer.close()
        await writer.wait_closed()


def pub_line(subject: bytes, payload: bytes, headers: bytes = b"") -> bytes:
    """The PUB (or HPUB) protocol bytes of one message; `headers` without its final CRLF."""
    if not headers:
        return b"PUB %s %d\r\n" % (subject, len(payload)) + payload + b"\r\n"
    block = headers + b"\r\n\r\n"
    size = len(block) + len(payload)
    return b"HPUB %s %d %d\r\n" % (subject, len(block), size) + block + payload + b"\r\n"
