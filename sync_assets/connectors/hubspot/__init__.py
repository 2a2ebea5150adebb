"""A connector for HubSpot's CRM v3 objects (`type: hubspot`): contacts, companies, deals and
custom objects, read by the search API and written by the batch endpoints (settings.py for
the instance's settings, connector.py for the endpoint of one object type).

The connector itself loads on first use (builtin.py imports only the settings), so a project
that never names HubSpot does not import the HTTP stack.
"""
