"""SIP: sans-IO messages, transactions, dialogs, digest, SDP; a thin asyncio edge. Knows nothing of calls."""
