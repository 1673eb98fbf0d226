"""Makes the administrator of the IAM-enforcing emulator and prints its key as `id:secret`.

The emulator lets its first three calls through unauthenticated
(`INITIAL_NO_AUTH_ACTION_COUNT=3`): exactly these three. Everything after, the tests'
set-up included, signs as this administrator or as a function's user.

Usage: python infra/iam_admin.py ENDPOINT
"""

import json
import sys

import boto3

endpoint = sys.argv[1]
iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    region_name="ap-southeast-1",
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
iam.create_user(UserName="admin")
everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.put_user_policy(UserName="admin", PolicyName="everything", PolicyDocument=json.dumps(everything))
key = iam.create_access_key(UserName="admin")["AccessKey"]
print(f"{key['AccessKeyId']}:{key['SecretAccessKey']}")
