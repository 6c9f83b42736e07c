"""Meta's shapes and rules (the WhatsApp Cloud API's side of the contract), shared by the
services and the tools that talk to them."""
