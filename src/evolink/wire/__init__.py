"""Sans-I/O WhatsApp Web wire layer: binary nodes, frames, Noise, protobufs and pairing crypto."""
