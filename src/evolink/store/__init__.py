"""evolink.store."""
