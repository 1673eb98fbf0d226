"""The AWS emulator for the test suites: moto's server, with DynamoDB requests serialised.

DynamoDB applies each TransactWriteItems atomically with respect to every other write.
moto's threaded server checks a transaction's conditions and applies its writes without a
lock, so two concurrent transactions can both pass their version checks and one update is
lost. Serialising DynamoDB requests restores DynamoDB's guarantee; other services (SQS long
polls in particular) stay concurrent.

Usage: python infra/moto_server.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

moto_app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def app(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb:
            # Produce the whole body inside the lock: the write happens while it is built.
            return [b"".join(moto_app(environ, start_response))]
    return moto_app(environ, start_response)


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, app, threaded=True, request_handler=MotoRequestHandler)
