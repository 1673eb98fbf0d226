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

With `--iam` (and `INITIAL_NO_AUTH_ACTION_COUNT` in the environment) the server enforces
IAM, and names the resource of each DynamoDB, KMS and SES v2 request the way AWS does (moto
names only SQS queues and S3 objects, so a policy scoped to a table, a key or an identity
would otherwise match nothing): a table or its index, a key, a sending identity.

Usage: python infra/moto_server.py HOST PORT [--iam]
"""

import json
import sys
import threading
import types

import moto.backends as moto_backends
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table
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

_moto_query = Table.query


def query(self, hash_key, *args, **kwargs):
    """moto's Query reads `all_items()`, the whole table sorted, to keep one partition (or
    the items of one index key) and sorts what matches again: its cost grows with the
    table, not the answer. Here a query on the table's key reads its partition only, and a
    query on an index every item, unsorted; moto's own code filters and sorts them."""
    index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
    if index_name:
        parts = self.items.values()
        self.all_items = lambda: [i for p in parts for i in (p.values() if self.range_key_attr else [p])]
    else:
        part = self.items.get(hash_key) if hash_key is not None else None
        self.all_items = lambda: [] if part is None else (list(part.values()) if self.range_key_attr else [part])
    try:
        return _moto_query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = query

# Every request asked which services moto has by listing its package folder and testing
# each entry with `isdir` (about 200 system calls a request); the answer never changes.
_modules = tuple(moto_backends.list_of_moto_modules())
moto_backends.list_of_moto_modules = lambda: _modules

def name_resources():
    """Gives DynamoDB, KMS and SES v2 requests the resource ARN IAM evaluates."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.kms.responses import KmsResponse
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.kms.utils import KEY_ID_LEN
    from moto.sesv2.responses import SESV2Response

    def params(self):
        body = self.body
        if isinstance(body, dict):
            return body
        return json.loads(body or "{}")

    def arn(self, service, resource):
        return f"arn:aws:{service}:{self.region}:{self.current_account}:{resource}"

    def dynamodb_resource(self):
        body = params(self)
        table = body.get("TableName")
        if table is None:
            # Transactions and batches: the first table named (this project has one).
            for item in body.get("TransactItems", []):
                table = next(iter(item.values()))["TableName"]
                break
            for name in body.get("RequestItems", {}):
                table = name
                break
        if table is None:
            return "*"
        index = body.get("IndexName")
        return arn(self, "dynamodb", f"table/{table}" + (f"/index/{index}" if index else ""))

    def kms_resource(self):
        body = params(self)
        key = body.get("KeyId")
        if key is None and body.get("CiphertextBlob"):
            import base64

            key = base64.b64decode(body["CiphertextBlob"])[:KEY_ID_LEN].decode(errors="replace")
        if key is None:
            return "*"
        try:
            key = self.kms_backend.any_id_to_key_id(key)
        except Exception:  # noqa: BLE001 - an unknown key is the action's own error
            return "*"
        return arn(self, "kms", f"key/{key}")

    def ses_resource(self):
        body = params(self)
        sender = body.get("FromEmailAddress", "")
        if "@" not in sender:
            return "*"
        return arn(self, "ses", f"identity/{sender.rsplit('@', 1)[1].rstrip('>')}")

    from moto.iam.access_control import IAMRequest

    check = IAMRequest.check_action_permitted

    # IAM has no action for a DynamoDB transaction: AWS authorizes each of its items by
    # the item's own action (PutItem, UpdateItem, DeleteItem, ConditionCheckItem; GetItem
    # for TransactGetItems). moto checks the call's name instead.
    per_item = {
        "Put": "dynamodb:PutItem",
        "Update": "dynamodb:UpdateItem",
        "Delete": "dynamodb:DeleteItem",
        "ConditionCheck": "dynamodb:ConditionCheckItem",
        "Get": "dynamodb:GetItem",
    }

    # Likewise SQS authorizes a batch call by its single-message action.
    batches = {
        "sqs:SendMessageBatch": "sqs:SendMessage",
        "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    }

    # KMS authorizes ReEncrypt by ReEncryptFrom on the source key and ReEncryptTo on the
    # destination; both are checked on the source key (the platform re-wraps within one key).
    split = {"kms:ReEncrypt": ["kms:ReEncryptFrom", "kms:ReEncryptTo"]}

    def actions(request):
        if request._action in batches:
            return [batches[request._action]]
        if request._action in split:
            return split[request._action]
        if request._action not in ("dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"):
            return [request._action]
        items = json.loads(request._body or b"{}").get("TransactItems", [])
        return sorted({per_item[next(iter(item))] for item in items}) or [request._action]

    def logged_check(self, resource):
        called = self._action
        try:
            for action in actions(self):
                self._action = action
                check(self, resource)
        except Exception:
            # What was refused, for whoever reads this emulator's log after a failed test.
            who = getattr(getattr(self, "_access_key", None), "arn", "?")
            print(f"IAM denied {self._action} on {resource} to {who}", file=sys.stderr, flush=True)
            raise
        finally:
            self._action = called

    IAMRequest.check_action_permitted = logged_check
    def secret_resource(self):
        secret = params(self).get("SecretId")
        if secret is None:
            return "*"
        try:
            return self.backend.secrets[secret].arn
        except Exception:  # noqa: BLE001 - an unknown secret is the action's own error
            return "*"

    SecretsManagerResponse._determine_resource = secret_resource
    DynamoHandler._determine_resource = dynamodb_resource
    KmsResponse._determine_resource = kms_resource
    SESV2Response._determine_resource = ses_resource


if "--iam" in sys.argv:
    name_resources()

moto_app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def app(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb:
            # Produce the whole body inside the lock: the write happens while it is built.
            return [b"".join(moto_app(environ, start_response))]
    return moto_app(environ, start_response)


class QuietRequestHandler(MotoRequestHandler):
    """Logs a request only when the emulator failed it: a line a request (tens of thousands
    in a run, conditional-check refusals included) cost a tenth of the server's time."""

    def log_request(self, code="-", size="-"):
        if not str(code).isdigit() or int(code) >= 500:
            super().log_request(code, size)


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, app, threaded=True, request_handler=QuietRequestHandler)
