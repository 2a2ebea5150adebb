"""Seed the demo's ObjectStack datastore (SQLite): accounts, contacts and orders.

Deterministic (fixed random seed), so every machine gets the same demo. Run it directly to
reset the demo: `python examples/seed.py --reset`.
"""

from __future__ import annotations

import argparse
import random
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

DATA = Path(__file__).parent / "data"
FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Barbara", "Ken", "Edsger", "Frances",
         "Donald", "Katherine", "John", "Radia", "Tim", "Hedy", "Dennis", "Sophie", "Bjarne"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Liskov", "Thompson",
        "Dijkstra", "Allen", "Knuth", "Johnson", "McCarthy", "Perlman", "Berners-Lee",
        "Lamarr", "Ritchie", "Wilson", "Stroustrup", "O'Brien"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka",
             "Tyrell", "Cyberdyne", "Soylent", "Aperture", "Vandelay", "Pied Piper"]
SUFFIX = ["Corp", "GmbH", "Ltd", "Inc", "SA", "AG"]
COUNTRIES = ["de", "fr", "us", "gb", "jp", "br", "in", "ng"]
STAGES = ["Open", "Paid", "Shipped", "Refunded"]

metadata = sa.MetaData()
account = sa.Table(
    "account", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("industry", sa.Text),
    sa.Column("country", sa.Text),
    sa.Column("annual_revenue", sa.Numeric(14, 2)),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
contact = sa.Table(
    "contact", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("account.id")),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("phone", sa.Text),
    sa.Column("country", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("lifetime_value", sa.Text),  # text on purpose: the demo casts it to a number
    sa.Column("notes", sa.Text),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
order = sa.Table(
    "order", metadata,  # a reserved word: the engine quotes every name
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("contact_id", sa.Integer, sa.ForeignKey("contact.id"), nullable=False),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("account.id")),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("ordered_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


def seed(url: str, *, accounts: int = 40, contacts: int = 400, orders: int = 1500) -> None:
    rng = random.Random(42)
    start = datetime(2026, 1, 1, 9, 0, 0)
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(account.insert(), [
            {"id": i, "name": f"{rng.choice(COMPANIES)} {rng.choice(SUFFIX)} {i}",
             "industry": rng.choice(["software", "retail", "energy", "health", None]),
             "country": rng.choice(COUNTRIES),
             "annual_revenue": round(rng.uniform(1e5, 5e7), 2),
             "is_active": rng.random() > 0.15,
             "updated_at": start + timedelta(hours=rng.randrange(0, 2000))}
            for i in range(1, accounts + 1)
        ])
        rows = []
        for i in range(1, contacts + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            ltv = f"{rng.uniform(0, 5000):.2f}" if rng.random() > 0.02 else "n/a"
            rows.append({
                "id": i, "account_id": rng.randrange(1, accounts + 1),
                "first_name": first, "last_name": last,
                "email": f"{first}.{last}.{i}@example.com".lower().replace("'", ""),
                "phone": f"+49 30 {rng.randrange(1000000, 9999999)}" if rng.random() > .3 else None,
                "country": rng.choice(COUNTRIES),
                "status": rng.choices(["active", "lead", "churned"], [70, 20, 10])[0],
                "lifetime_value": ltv,
                "notes": None,
                # many contacts share a timestamp: bulk imports do that
                "updated_at": start + timedelta(minutes=10 * (i // 7)),
            })
        conn.execute(contact.insert(), rows)
        conn.execute(order.insert(), [
            {"id": i, "contact_id": (c := rng.randrange(1, contacts + 1)),
             "account_id": rows[c - 1]["account_id"],
             "amount": round(rng.uniform(5, 900), 2), "currency": rng.choice(["EUR", "USD"]),
             "stage": rng.choices(STAGES, [20, 50, 25, 5])[0],
             "ordered_at": (t := start + timedelta(minutes=7 * i)),
             "updated_at": t + timedelta(minutes=rng.randrange(0, 600))}
            for i in range(1, orders + 1)
        ])
    engine.dispose()


def ensure_seeded(data_dir: Path = DATA) -> Path:
    """Seed the demo datastore once; later calls leave it (and its changes) alone."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "objectstack.db"
    if not db.exists():
        seed(f"sqlite:///{db}")
    return db


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reset", action="store_true", help="delete the demo data first")
    args = parser.parse_args()
    if args.reset:
        for f in DATA.glob("*.db*"):
            f.unlink()
    print(f"seeded {ensure_seeded()}")
