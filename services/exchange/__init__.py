"""The central submission exchange: packages to the central database, receipts, disputes, final."""
