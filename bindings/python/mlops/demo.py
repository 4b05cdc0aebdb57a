"""Sample multi-customer support-ticket data for the demo: one text adapter per customer.

Each customer has its own products and its own subset of intents, so every adapter learns a slightly
different task from the same table. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import json
import pathlib
import random
import tempfile

INTENTS = {
    "billing": ["I was charged twice for {p}", "the invoice for {p} looks wrong", "refund the fee on my {p} plan",
                "why did my {p} bill go up", "update the card used for {p}", "cancel the {p} subscription charge"],
    "shipping": ["my {p} order has not arrived", "where is the parcel with {p}", "tracking for {p} stopped updating",
                 "the {p} delivery went to the wrong address", "can you ship {p} faster", "{p} box arrived damaged"],
    "returns": ["I want to return the {p}", "how do I send back {p}", "exchange {p} for another size",
                "the {p} return label does not work", "refund after returning {p}", "{p} is not what I ordered"],
    "technical": ["{p} will not turn on", "the {p} app keeps crashing", "{p} shows an error code",
                  "cannot pair {p} with my phone", "firmware update broke {p}", "{p} battery drains fast"],
    "account": ["reset my password for {p}", "cannot log in to the {p} portal", "change the email on my {p} account",
                "delete my {p} account", "two factor code for {p} never comes", "merge my two {p} accounts"],
}
FILLER = ["please", "help", "urgent", "thanks", "again", "today", "asap", "hello", "hi", "still", "team"]
PRODUCTS = ["router", "kettle", "headset", "camera", "scooter", "lamp", "speaker", "blender", "drone", "watch",
            "tablet", "printer", "heater", "monitor", "keyboard", "charger", "thermostat", "vacuum"]


def customer_name(i: int) -> str:
    return f"customer-{i:03d}"


def _sentence(rng: random.Random, intent: str, product: str) -> str:
    words = rng.choice(INTENTS[intent]).format(p=product).split()
    for _ in range(rng.randint(0, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
    return " ".join(words)


def ticket_rows(customers: int, rows_per_customer: int, seed: int = 0):
    """Yields (id, customer, body, intent) rows."""
    rng = random.Random(seed)
    next_id = 1
    for c in range(1, customers + 1):
        intents = sorted(rng.sample(sorted(INTENTS), rng.randint(3, 5)))
        products = rng.sample(PRODUCTS, 3)
        for _ in range(rows_per_customer):
            intent = rng.choice(intents)
            yield next_id, customer_name(c), _sentence(rng, intent, rng.choice(products)), intent
            next_id += 1


def write_csv(path: pathlib.Path, rows, header=("id", "customer", "body", "intent")) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


TABLES = ("tickets", "adapters")


def existing_tables(source) -> dict:
    """The demo's tables that `source` already has, with their row counts."""
    import mlops

    found = {}
    for table in TABLES:
        try:
            found[table] = int(source.query(f"SELECT COUNT(*) AS n FROM {table}").to_numpy()["n"][0])
        except mlops.MlopsError:
            pass  # no such table (a source that cannot be read fails again, and says why, when written)
    return found


def init_demo(source, customers: int = 60, rows_per_customer: int = 120, seed: int = 0, epochs: int = 8,
              replace: bool = False):
    """Creates the tables `tickets` and `adapters` (one adapter per customer) and commits them; with
    `replace`, the adapters already there are dropped first (tickets are always replaced).

    Returns the commit.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "tickets.csv"
        write_csv(path, ticket_rows(customers, rows_per_customer, seed))
        source.import_csv("tickets", str(path), primary_key=["id"], message="Import demo tickets")
    source.execute("CREATE TABLE IF NOT EXISTS adapters (name TEXT PRIMARY KEY, config TEXT NOT NULL)")
    if replace:
        source.execute("DELETE FROM adapters")
    defaults = {"table": "tickets", "label": "intent", "text": "body", "epochs": epochs, "batch_size": 32,
                "learning_rate": 0.05, "l2": 1e-4, "validation_fraction": 0.2, "featurizer": {"dimension": 512}}
    source.execute("INSERT INTO adapters (name, config) VALUES (?, ?)", ("*", json.dumps(defaults)))
    for c in range(1, customers + 1):
        config = {"where": "customer = ?", "params": [customer_name(c)]}
        source.execute("INSERT INTO adapters (name, config) VALUES (?, ?)", (customer_name(c), json.dumps(config)))
    return source.commit("Add the adapter catalog: one text adapter per customer")


def analyst_change(path: pathlib.Path, source, customers: list[str], seed: int = 1,
                   flip: str | None = None) -> tuple[int, tuple[str, str] | None]:
    """Writes an analyst-style CSV (relabelled and new tickets) touching only `customers`. For `flip` (one of
    them), the mistake instead: every ticket of its most common intent relabelled as its second most common.

    Returns the CSV's rows and, with `flip`, the (intent, relabelled as) pair."""
    rng = random.Random(seed)
    table = source.query("SELECT id, customer, body, intent FROM tickets ORDER BY id").to_numpy()
    ids, cust, bodies, intents = (list(table[k]) for k in ("id", "customer", "body", "intent"))
    next_id = int(max(ids)) + 1
    rows, flipped = [], None
    for name in customers:
        mine = [i for i, c in enumerate(cust) if c == name]
        known = sorted({intents[i] for i in mine})
        if name == flip:
            counts = sorted(((-sum(intents[i] == k for i in mine), k) for k in known))
            flipped = (counts[0][1], counts[1][1])
            rows += [(int(ids[i]), name, bodies[i], flipped[1]) for i in mine if intents[i] == flipped[0]]
            continue
        for i in rng.sample(mine, min(5, len(mine))):  # relabel a few tickets
            rows.append((int(ids[i]), name, bodies[i], rng.choice([k for k in known if k != intents[i]] or known)))
        for _ in range(10):  # and add new ones
            intent = rng.choice(known)
            rows.append((next_id, name, _sentence(rng, intent, rng.choice(PRODUCTS)), intent))
            next_id += 1
    write_csv(path, rows)
    return len(rows), flipped


def serve_and_switch(first_dir: pathlib.Path, second_dir: pathlib.Path, customer: str, text: str, env: dict) -> dict:
    """Starts `mlops serve` on `first_dir`, predicts `text` for `customer` over HTTP, then switches the running
    server to `second_dir` through the admin route while a client keeps sending requests, and stops it with
    SIGTERM. Returns what happened: predicted intent, the two /version answers, requests sent and failed."""
    import http.client
    import re
    import secrets
    import signal
    import subprocess
    import sys
    import threading

    token = secrets.token_hex(16)
    proc = subprocess.Popen([sys.executable, "-m", "mlops", "serve", str(first_dir), "--port", "0"],
                            env=dict(env, MLOPS_ADMIN_TOKEN=token), stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    print(line, end="", flush=True)
    m = re.search(r"on http://([\d.]+):(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"demo: mlops serve did not start: {line}{proc.stderr.read()}")
    host, port = m.group(1), int(m.group(2))

    def call(conn, method, path, body=None, headers=None):
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")

    out = {"sent": 0, "failed": 0}
    try:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        body = {"dataframe_split": {"columns": ["body"], "data": [[text]]}}
        print(f"$ curl -s -X POST http://{host}:{port}/models/{customer}/invocations -H 'Content-Type: application/json'"
              f" -d '{json.dumps(body)}'")
        status, reply = call(conn, "POST", f"/models/{customer}/invocations", body)
        print(f"{status} {json.dumps(reply)}")
        out["intent"] = reply["predictions"][0]
        out["before"] = call(conn, "GET", "/version")[1]

        stop = threading.Event()

        def load() -> None:  # a client that keeps asking while the release is switched
            c = http.client.HTTPConnection(host, port, timeout=30)
            while not stop.is_set():
                try:
                    s, _ = call(c, "POST", f"/models/{customer}/invocations", body)
                except OSError:
                    s = 0
                out["sent"] += 1
                out["failed"] += s != 200

        client = threading.Thread(target=load)
        client.start()
        print(f"$ curl -s -X POST http://{host}:{port}/admin/release -H 'Authorization: Bearer ...' "
              f"-d '{{\"release\": \"{second_dir}\"}}'")
        status, reply = call(conn, "POST", "/admin/release", {"release": str(second_dir)},
                             {"Authorization": f"Bearer {token}"})
        print(f"{status} {json.dumps(reply)}")
        out["after"] = call(conn, "GET", "/version")[1]
        stop.set()
        client.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        out["exit_code"] = proc.wait(timeout=60)
    return out
