"""Measures each function's start: from process start until it asks the Lambda runtime
API for its first event, then the first answer to one event.

It serves the Lambda runtime API on loopback itself (as `cargo lambda watch` does), runs
each function binary against it with the environment its template gives it (pointing at
the AWS emulator), and prints one JSON line per function:
  {"function", "ready_ms", "first_answer_ms", "peak_rss_kb"}

Usage: python infra/start_time.py BINARY_DIR EMULATOR_ENDPOINT [RUNS]
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time

BINARY_DIR, ENDPOINT = sys.argv[1], sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
HERE = os.path.dirname(os.path.abspath(__file__))


def event(name):
    with open(os.path.join(HERE, "events", name)) as f:
        return f.read().encode()


# The first event each function answers: what needs no data (the whole API's document
# for HTTP functions; a batch for the queue consumers).
openapi = json.loads(event("health-http.json"))
openapi["rawPath"] = openapi["requestContext"]["http"]["path"] = "/openapi.json"
OPENAPI = json.dumps(openapi).encode()
FIRST_EVENT = {
    "auth": OPENAPI,
    "offering": OPENAPI,
    "accounts": OPENAPI,
    "myinfo": OPENAPI,
    "matching": OPENAPI,
    "settlement": OPENAPI,
    "reconcile": OPENAPI,
    "allocation": event("allocation-sqs.json"),
    "notify": event("allocation-sqs.json"),
}


class Runtime(http.server.BaseHTTPRequestHandler):
    """The runtime API: one event, then the function's answer."""

    state = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/invocation/next"):
            if "ready" in Runtime.state:
                # The second poll: the process is stopped before it needs an answer.
                return
            Runtime.state["ready"] = time.perf_counter()
            body = Runtime.state["event"]
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:ap-southeast-1:123456789012:function:f")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        answer = self.rfile.read(length)
        Runtime.state["answered"] = time.perf_counter()
        Runtime.state["answer"] = answer
        Runtime.state["path"] = self.path
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def environment(name, port):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "start-time",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/dabs/start-time/{name}",
        "AWS_REGION": "ap-southeast-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": ENDPOINT,
        "TABLE_NAME": "start-time",
        "RUST_LOG": "warn",
    }
    queue = f"{ENDPOINT}/123456789012/start-time"
    extra = {
        "auth": {"DATA_KEY_ID": "k", "TOKEN_KEY_ID": "k", "MAIL_FROM": "no-reply@dabs.example.sg"},
        "offering": {"DATA_KEY_ID": "k", "ALLOCATION_QUEUE_URL": queue, "ALLOCATION_DLQ_URL": queue},
        "accounts": {"BANK_API_URL": "http://127.0.0.1:9", "BANK_SECRET_ARN": "arn:secret"},
        "allocation": {"ALLOCATION_QUEUE_URL": queue, "ALLOCATION_DLQ_URL": queue,
                       "SETTLEMENT_QUEUE_URL": queue, "SETTLEMENT_DLQ_URL": queue},
        "settlement": {"SETTLEMENT_QUEUE_URL": queue, "SETTLEMENT_DLQ_URL": queue,
                       "ALLOCATION_QUEUE_URL": queue, "ALLOCATION_DLQ_URL": queue,
                       "BANK_SECRET_ARN": "arn:secret", "CHAIN_SECRET_ARN": "arn:secret",
                       "CUSTODY_SECRET_ARN": "arn:secret"},
        "matching": {"MATCHING_QUEUE_URL": queue, "MATCHING_DLQ_URL": queue},
        "reconcile": {"RECONCILE_QUEUE_URL": queue, "RECONCILE_DLQ_URL": queue,
                      "CHAIN_SECRET_ARN": "arn:secret", "CUSTODY_SECRET_ARN": "arn:secret"},
    }
    env.update(extra.get(name, {}))
    return env


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def measure(name):
    readies, answers, rss = [], [], []
    for _ in range(RUNS):
        # A runtime API per run: a stopped process's last poll cannot reach the next run.
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        Runtime.state = {"event": FIRST_EVENT[name]}
        started = time.perf_counter()
        process = subprocess.Popen([os.path.join(BINARY_DIR, name)], env=environment(name, server.server_address[1]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = started + 20
        while "answered" not in Runtime.state and time.perf_counter() < deadline:
            time.sleep(0.001)
        rss.append(peak_rss_kb(process.pid))
        process.terminate()
        process.wait()
        server.shutdown()
        server.server_close()
        if "answered" not in Runtime.state:
            raise SystemExit(f"{name} did not answer its first event")
        if not Runtime.state["path"].endswith("/response"):
            raise SystemExit(f"{name} answered with an error: {Runtime.state['answer'][:300]!r}")
        readies.append((Runtime.state["ready"] - started) * 1000)
        answers.append((Runtime.state["answered"] - started) * 1000)
    return {
        "function": name,
        "runs": RUNS,
        "ready_ms": round(statistics.median(readies), 1),
        "first_answer_ms": round(statistics.median(answers), 1),
        "peak_rss_kb": max(rss),
    }


for function in ["auth", "offering", "accounts", "myinfo", "matching", "allocation", "settlement", "reconcile", "notify"]:
    print(json.dumps(measure(function)), flush=True)
