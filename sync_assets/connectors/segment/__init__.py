"""A destination-only connector for Segment (`type: segment`): profiles sent as `identify`
calls through the HTTP Tracking API's batch endpoint (connector.py), and its settings
(settings.py). The connector module is imported only when a project opens an endpoint."""
