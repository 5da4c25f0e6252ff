"""The storage layer: all SQL lives here, as synchronous transaction functions `fn(txn, ...)`."""
