"""A handler that does nothing (the throughput benchmark's function)."""


def handler(event, context):
    return None
