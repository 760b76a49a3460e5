"""A real local control plane and a test node agent for the e2e tier."""
