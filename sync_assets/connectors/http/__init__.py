"""The generic HTTP/JSON connector (`type: http`): any JSON API described in settings
(settings.py) — its authentication, one read endpoint with its pagination, and one endpoint
and method per write operation — behind the connector contract (connector.py, imported only
when a project opens an endpoint)."""
