"""The NATS edge: the only package that imports nats.

The JetStream transport, the key-value StateStore, the results-stream reader
and the embedded nats-server.
"""
