"""Protocol-faithful WhatsApp-like server and simulated phones, built on evolink.wire (never on evolink.wa)."""
