"""evolink.gateway."""
