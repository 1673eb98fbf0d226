"""The AWS emulator for the test suites: moto's server, with DynamoDB requests serialised.

DynamoDB applies each TransactWriteItems atomically with respect to every other write.
moto's threaded server checks a transaction's conditions and applies its writes without a
lock, so two concurrent transactions can both pass their version checks and one update is
lost. Serialising DynamoDB requests restores DynamoDB's guarantee; other services (SQS long
polls in particular) stay concurrent.

moto's TransactWriteItems also deep-copies every table it touches, once per operation,
to roll back on failure: its cost grows with the table, so a test that writes thousands of
transactions slows to a crawl. With requests serialised, the conditions can be checked
first against the current state and the writes applied only when all hold, which needs no
copy; `transact_write_items` below does that and then hands the writes to moto's own code
with the copy turned into the identity.

Usage: python infra/moto_server.py HOST PORT
"""

import sys
import threading
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

_moto_transact = dynamodb_models.DynamoDBBackend.transact_write_items
_no_copy = types.SimpleNamespace(deepcopy=lambda value: value)


def transact_write_items(self, transact_items):
    """Checks every condition first (nothing written), then applies the writes."""
    if len(transact_items) > 100:
        return _moto_transact(self, transact_items)
    seen, reasons = set(), []
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        table = self.get_table(op["TableName"])
        if op_type == "Put":
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = op["Key"]
        identity = (op["TableName"], str(dict(sorted(key.items()))))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        condition = op.get("ConditionExpression")
        if condition is not None:
            current = self.get_item(op["TableName"], key)
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if not get_filter_expression(condition, names, values).expr(current):
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    old = current.to_json()["Attributes"]
                reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
                continue
        reasons.append((None, None, None))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    real_copy = dynamodb_models.copy
    dynamodb_models.copy = _no_copy
    try:
        return _moto_transact(self, transact_items)
    finally:
        dynamodb_models.copy = real_copy


dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items

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
