"""Media repository internals: the content store and the thumbnailer."""
