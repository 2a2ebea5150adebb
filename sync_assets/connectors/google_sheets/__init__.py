"""Google Sheets (`type: google_sheets`): one tab of a spreadsheet as a record set, through the
Sheets API v4 with a service account. settings.py (Pydantic only), client.py (calls, retries,
pacing, counts), connector.py (the endpoint)."""
