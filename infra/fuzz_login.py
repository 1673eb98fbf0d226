"""Signs in as the local runner's seeded super-admin (password, then TOTP) and prints
the access token: the schemathesis run in infra/test.sh fuzzes the API as that user."""
import base64
import hashlib
import hmac
import json
import struct
import sys
import time
import urllib.error
import urllib.request


def totp(secret: str, at: float) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def main() -> None:
    base, seed_file, role = sys.argv[1], sys.argv[2], sys.argv[3]
    seed = json.load(open(seed_file))
    user = next(u for u in seed["users"] if role in u["roles"])
    for attempt in range(2):
        challenge = post(base, "/v1/auth/login", {"email": user["email"], "password": user["password"]})
        code = totp(user["totp_secret"], time.time())
        try:
            tokens = post(base, "/v1/auth/login/mfa", {"challenge": challenge["challenge"], "code": code})
            print(tokens["access_token"])
            return
        except urllib.error.HTTPError:
            # A code is accepted once: after a sign-in in the same 30 s, wait for the next.
            if attempt == 1:
                raise
            time.sleep(30 - time.time() % 30 + 1)


if __name__ == "__main__":
    main()
