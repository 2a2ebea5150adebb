"""The demo against a real ObjectStack server: start one on 127.0.0.1 (the npm packages the
test suite pins, installed into a cache outside the repository), seed contacts and accounts
through its REST API, mint an API key, and run `dagster dev` on examples/server with it.

    scripts/dev-objectstack          # then open http://127.0.0.1:3000

The server lives as long as this script; its data is thrown away when it stops.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the server harness the test suite uses

from sync_assets.connectors.objectstack_rest import ObjectStackClient  # noqa: E402

from objectstack_harness import ObjectStackServer  # noqa: E402

FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Barbara", "Ken", "Edsger", "Frances"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Liskov", "Thompson"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka"]


def seed(url: str, api_key: str, contacts: int = 120) -> None:
    """Deterministic demo records (fixed random seed)."""
    rng = random.Random(7)
    with ObjectStackClient(url, api_key) as client:
        client.batch("account", "create", [
            {"name": f"{c} Corp", "domain": f"{c.lower()}.example", "employees": 10 * (i + 1)}
            for i, c in enumerate(COMPANIES)])
        client.batch("contact", "create", [
            {"first_name": rng.choice(FIRST), "last_name": rng.choice(LAST),
             "email": f"contact{i}@example.com",
             "status": rng.choice(["active", "active", "lead", "inactive"]),
             "lifetime_value": round(rng.uniform(0, 5000), 2), "is_vip": rng.random() < 0.1}
            for i in range(contacts)])


def main() -> int:
    server = ObjectStackServer()
    server.start()
    try:
        seed(server.url, server.api_key)
        env = {**os.environ, "OBJECTSTACK_URL": server.url,
               "OBJECTSTACK_API_KEY": server.api_key,
               "SYNC_ASSETS_PROJECT": str(ROOT / "examples" / "server")}
        print(f"ObjectStack server on {server.url} (seeded); starting Dagster", flush=True)
        dagster = [str(ROOT / ".venv" / "bin" / "dagster"), "dev", "-w",
                   str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                   "-p", os.environ.get("PORT", "3000"), *sys.argv[1:]]
        return subprocess.call(dagster, env=env, cwd=ROOT)
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
