"""Engine haproxy: haproxy.cfg rendered from a pool (config) and the server slots that keep
a backend's identity across changes (slots). The agent applies them (hakeeper.agents)."""
