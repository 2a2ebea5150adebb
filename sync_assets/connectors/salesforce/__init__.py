"""The Salesforce connector (`type: salesforce`): sObjects through the REST API (SOQL reads,
sObject Collections writes) and Bulk API 2.0 ingest jobs for large batches.

settings.py holds the settings (Pydantic only); client.py the OAuth2 session and every HTTP
call (through the shared web client: counted, retried, redacted); connector.py the endpoint,
imported on first use so that httpx loads only when a project opens Salesforce.
"""

from __future__ import annotations

from .settings import SalesforceSettings

__all__ = ["SalesforceSettings"]
