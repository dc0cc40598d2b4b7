"""evolink.api."""
