"""`errorHandling.notifyOnError`: an email when a run fails or ends partial, over SMTP.

Credentials are read from the environment when a message is sent, so they never appear in
Dagster's resource config, the UI, or logs.
"""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from typing import Any

import dagster as dg


class SmtpNotifier(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Sends sync failure notices. Unset host (the default reads SYNC_ASSETS_SMTP_HOST) means
    notifications are skipped with a warning in the run's log."""

    host_env: str = "SYNC_ASSETS_SMTP_HOST"
    port_env: str = "SYNC_ASSETS_SMTP_PORT"
    username_env: str = "SYNC_ASSETS_SMTP_USERNAME"
    password_env: str = "SYNC_ASSETS_SMTP_PASSWORD"
    from_address: str = "sync-assets@localhost"
    starttls: bool = False
    timeout_seconds: float = 10.0

    def configured(self) -> bool:
        return bool(os.environ.get(self.host_env))

    def send(self, recipients: list[str], subject: str, body: str) -> None:
        host = os.environ[self.host_env]
        port = int(os.environ.get(self.port_env) or 25)
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(host, port, timeout=self.timeout_seconds) as smtp:
            if self.starttls:
                smtp.starttls()
            user = os.environ.get(self.username_env)
            if user:
                smtp.login(user, os.environ.get(self.password_env, ""))
            smtp.send_message(message)


def failure_notice(spec: dict[str, Any], run_url: str | None = None) -> tuple[str, str]:
    """Subject and plain-text body for a failed or partial run."""
    stats = spec.get("stats", {})
    subject = f"[sync-assets] {spec['syncName']} {spec['status']}"
    lines = [
        f"Sync {spec['syncName']} ended {spec['status']} (run {spec['id']}).",
        f"Started {spec['startedAt']}, finished {spec.get('completedAt', '?')}.",
        "",
        "Records: " + ", ".join(f"{k.removeprefix('records').lower()} {v}"
                                for k, v in stats.items() if k.startswith("records")),
    ]
    errors = spec.get("errors", [])
    if errors:
        lines += ["", f"Errors ({len(errors)} shown):"]
        for e in errors[:20]:
            where = " ".join(f"{k}={e[k]}" for k in ("recordId", "field", "code") if k in e)
            lines.append(f"- {where + ': ' if where else ''}{e['message']}")
    if run_url:
        lines += ["", run_url]
    return subject, "\n".join(lines)
